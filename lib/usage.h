/* usage.h: what a leaf certificate is for: its extended key usages. */
#ifndef PKID_LIB_USAGE_H
#define PKID_LIB_USAGE_H

typedef enum pki_usage {
  PKI_USAGE_SERVER = 1, /* TLS server: EKU id-kp-serverAuth */
  PKI_USAGE_CLIENT = 2, /* TLS client: EKU id-kp-clientAuth */
} pki_usage;

#endif /* PKID_LIB_USAGE_H */
