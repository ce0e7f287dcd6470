# vault.hcl: Vault behind TLS with the certificate the pki/ tree holds for
# the catalogue's vault service (vault.cybersec-framework.local).
# tls-copy.sh has put the certificate (with its chain) and the key, owned
# by the vault user, in /vault/tls before Vault starts.

listener "tcp" {
  address            = "0.0.0.0:8200"
  cluster_address    = "0.0.0.0:8201"
  tls_cert_file      = "/vault/tls/vault-server.crt"
  tls_key_file       = "/vault/tls/vault-server.key"
  tls_min_version    = "tls12"
  # Clients that present a certificate are checked against the root.
  tls_client_ca_file = "/etc/pki/root-ca/root-ca.crt"
}

# One node: the file backend on the vault_data volume. /vault/file belongs
# to the vault user in the image, so a new volume there does too.
storage "file" {
  path = "/vault/file"
}

# The names in the certificate, not 0.0.0.0 or the bare service name.
api_addr     = "https://vault.cybersec-framework.local:8200"
cluster_addr = "https://vault.cybersec-framework.local:8201"

ui = false
