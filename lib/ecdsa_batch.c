#include "lib/ecdsa_batch.h"

#include <stdlib.h>

#include <openssl/bn.h>
#include <openssl/bytestring.h>
#include <openssl/ec.h>
#include <openssl/ec_key.h>
#include <openssl/err.h>
#include <openssl/mem.h>
#include <openssl/nid.h>

/* Side channels. The secret values (d, k, k^-1, products of k) go only
 * through BoringSSL functions that do not branch on them or index memory
 * by them: BN_rand_range_ex (rejection sampling: only rejected draws are
 * observable), EC_POINT_mul with the generator (ec_point_mul_scalar_base,
 * the constant-time nistz256 or fiat P-256 comb), the affine conversion
 * (constant-time field inversion), BN_mod_mul_montgomery (bn_mul_mont),
 * BN_mod_add_quick (bn_mod_add_consttime) and BN_mod_exp_mont_consttime
 * for the inversion (Fermat: a^-1 = a^(n-2), n prime). BoringSSL's BIGNUMs
 * carry a width; the Montgomery results here always have the full width of
 * n, and values drawn by BN_rand_range_ex have it too. r and e are public.
 *
 * Montgomery form. Values marked _mont hold a * R mod n (R = 2^256). A
 * Montgomery product of x_mont and y_mont is (xy)_mont, and of a plain x
 * and y_mont is the plain xy: that is how plain results are read out
 * without a separate conversion. */

/* ecdsa_pair is one prepared nonce: r = x(kG) mod n, k^-1 in Montgomery
 * form, and k^-1 r d (plain), so that s = k^-1 e + k^-1 r d. */
typedef struct ecdsa_pair {
  BIGNUM *kinv_mont; /* secret */
  BIGNUM *r;
  BIGNUM *rdk;       /* secret */
} ecdsa_pair;

struct pki_ecdsa_pool {
  const EC_GROUP *group; /* static in BoringSSL: shared, immutable */
  const BIGNUM *order;   /* n, owned by group */
  BN_MONT_CTX *mont;     /* Montgomery arithmetic mod n */
  BIGNUM *order_minus_2; /* Fermat's exponent */
  BIGNUM *d_mont;        /* the private key, secret */
  BN_CTX *ctx;
  EC_POINT *point;       /* scratch: kG */

  ecdsa_pair *pairs;     /* pairs[0..available) are ready */
  size_t capacity;
  size_t available;
  ecdsa_pair spare;      /* computed on the spot: empty pool, tests */

  /* Refill scratch, one entry per nonce of a batch. */
  BIGNUM *k_mont[PKI_ECDSA_INVERT_BATCH];
  BIGNUM *prefix[PKI_ECDSA_INVERT_BATCH];
  BIGNUM *k, *x, *tmp, *e, *s; /* k and tmp hold secrets */
};

static void pair_wipe(ecdsa_pair *p) {
  BN_clear(p->kinv_mont);
  BN_clear(p->r);
  BN_clear(p->rdk);
}

static int pair_alloc(ecdsa_pair *p) {
  p->kinv_mont = BN_new();
  p->r = BN_new();
  p->rdk = BN_new();
  return p->kinv_mont != NULL && p->r != NULL && p->rdk != NULL;
}

static void pair_free(ecdsa_pair *p) {
  BN_clear_free(p->kinv_mont);
  BN_clear_free(p->r);
  BN_clear_free(p->rdk);
}

void pki_ecdsa_pool_free(pki_ecdsa_pool *pool) {
  if (pool == NULL) return;
  if (pool->pairs != NULL) {
    for (size_t i = 0; i < pool->capacity; i++) pair_free(&pool->pairs[i]);
    free(pool->pairs);
  }
  pair_free(&pool->spare);
  for (size_t i = 0; i < PKI_ECDSA_INVERT_BATCH; i++) {
    BN_clear_free(pool->k_mont[i]);
    BN_clear_free(pool->prefix[i]);
  }
  BN_clear_free(pool->k);
  BN_clear_free(pool->tmp);
  BN_free(pool->x);
  BN_free(pool->e);
  BN_free(pool->s);
  BN_clear_free(pool->d_mont);
  BN_free(pool->order_minus_2);
  BN_MONT_CTX_free(pool->mont);
  EC_POINT_free(pool->point);
  BN_CTX_free(pool->ctx);
  OPENSSL_cleanse(pool, sizeof(*pool));
  free(pool);
}

pki_ecdsa_pool *pki_ecdsa_pool_new(const EVP_PKEY *key, size_t capacity,
                                   pki_err *err) {
  const EC_KEY *ec = EVP_PKEY_get0_EC_KEY(key);
  if (ec == NULL || EC_KEY_get0_group(ec) == NULL ||
      EC_GROUP_get_curve_name(EC_KEY_get0_group(ec)) != NID_X9_62_prime256v1) {
    ERR_clear_error();
    PKI_ERR(err, PKI_ERR_UNSUPPORTED,
            "batched ECDSA signing needs an ECDSA P-256 key");
    return NULL;
  }
  const BIGNUM *d = EC_KEY_get0_private_key(ec);
  if (d == NULL) {
    PKI_ERR(err, PKI_ERR_INVALID, "the ECDSA key has no private part");
    return NULL;
  }
  if (capacity == 0 || capacity > SIZE_MAX / sizeof(ecdsa_pair)) {
    PKI_ERR(err, PKI_ERR_INVALID, "ECDSA pool capacity %zu is out of range",
            capacity);
    return NULL;
  }
  pki_ecdsa_pool *pool = calloc(1, sizeof(*pool));
  if (pool == NULL) goto oom;
  pool->group = EC_KEY_get0_group(ec);
  pool->order = EC_GROUP_get0_order(pool->group);
  pool->capacity = capacity;
  pool->pairs = calloc(capacity, sizeof(ecdsa_pair));
  if (pool->pairs == NULL) goto oom;
  for (size_t i = 0; i < capacity; i++) {
    if (!pair_alloc(&pool->pairs[i])) goto oom;
  }
  if (!pair_alloc(&pool->spare)) goto oom;
  for (size_t i = 0; i < PKI_ECDSA_INVERT_BATCH; i++) {
    if ((pool->k_mont[i] = BN_new()) == NULL ||
        (pool->prefix[i] = BN_new()) == NULL) {
      goto oom;
    }
  }
  if ((pool->k = BN_new()) == NULL || (pool->x = BN_new()) == NULL ||
      (pool->tmp = BN_new()) == NULL || (pool->e = BN_new()) == NULL ||
      (pool->s = BN_new()) == NULL || (pool->d_mont = BN_new()) == NULL ||
      (pool->order_minus_2 = BN_new()) == NULL ||
      (pool->ctx = BN_CTX_new()) == NULL ||
      (pool->point = EC_POINT_new(pool->group)) == NULL) {
    goto oom;
  }
  /* n is public, so the faster (variable-time) set-up is fine. */
  pool->mont = BN_MONT_CTX_new_for_modulus(pool->order, pool->ctx);
  if (pool->mont == NULL ||
      !BN_copy(pool->order_minus_2, pool->order) ||
      !BN_sub_word(pool->order_minus_2, 2)) {
    goto oom;
  }
  /* EC_KEY keeps 1 <= d < n, which BN_to_montgomery requires. */
  if (BN_is_negative(d) || BN_is_zero(d) || BN_cmp(d, pool->order) >= 0) {
    PKI_ERR(err, PKI_ERR_INVALID, "the ECDSA private key is out of range");
    pki_ecdsa_pool_free(pool);
    return NULL;
  }
  if (!BN_to_montgomery(pool->d_mont, d, pool->mont, pool->ctx)) goto oom;
  return pool;

oom:
  ERR_clear_error();
  pki_ecdsa_pool_free(pool);
  PKI_ERR(err, PKI_ERR_EXHAUSTED, "out of memory setting up the ECDSA pool");
  return NULL;
}

size_t pki_ecdsa_pool_available(const pki_ecdsa_pool *pool) {
  return pool->available;
}

size_t pki_ecdsa_pool_capacity(const pki_ecdsa_pool *pool) {
  return pool->capacity;
}

/* batch_invert_mont sets out[i] = in[i]^-1 for i < m (all in Montgomery
 * form, all nonzero, m <= PKI_ECDSA_INVERT_BATCH) with one inversion:
 * Montgomery's trick. With prefix[i] = in[0] * ... * in[i], one inversion
 * gives inv = prefix[m-1]^-1; then, walking down,
 *   out[i] = inv * prefix[i-1]   (the product without in[i], over all of it)
 *   inv    = inv * in[i]         (now the inverse of prefix[i-1])
 * That is 3(m-1) multiplications and one inversion instead of m
 * inversions. |out| may be |in|. Leaves secrets in pool->prefix and
 * pool->tmp; callers wipe them. */
static int batch_invert_mont(pki_ecdsa_pool *pool, BIGNUM **out,
                             BIGNUM *const *in, size_t m) {
  BN_CTX *ctx = pool->ctx;
  const BN_MONT_CTX *mont = pool->mont;
  BIGNUM **prefix = pool->prefix;
  BIGNUM *inv = pool->tmp;
  if (m == 0) return 1;
  if (!BN_copy(prefix[0], in[0])) return 0;
  for (size_t i = 1; i < m; i++) {
    if (!BN_mod_mul_montgomery(prefix[i], prefix[i - 1], in[i], mont, ctx)) {
      return 0;
    }
  }
  /* Out of Montgomery form, invert by Fermat in constant time, and back.
   * The product of nonzero values mod a prime is nonzero, so it has an
   * inverse. */
  if (!BN_from_montgomery(inv, prefix[m - 1], mont, ctx) ||
      !BN_mod_exp_mont_consttime(inv, inv, pool->order_minus_2, pool->order,
                                 ctx, mont) ||
      !BN_to_montgomery(inv, inv, mont, ctx)) {
    return 0;
  }
  for (size_t i = m - 1; i > 0; i--) {
    /* in[i] is read before out[i] is written, in case they alias. */
    if (!BN_mod_mul_montgomery(pool->k, inv, in[i], mont, ctx) ||
        !BN_mod_mul_montgomery(out[i], inv, prefix[i - 1], mont, ctx) ||
        !BN_copy(inv, pool->k)) {
      return 0;
    }
  }
  return BN_copy(out[0], inv) != NULL;
}

static void wipe_scratch(pki_ecdsa_pool *pool, size_t m) {
  for (size_t i = 0; i < m; i++) {
    BN_clear(pool->k_mont[i]);
    BN_clear(pool->prefix[i]);
  }
  BN_clear(pool->k);
  BN_clear(pool->tmp);
}

/* compute_pairs fills out[0..m) (m <= PKI_ECDSA_INVERT_BATCH) with fresh
 * pairs. With |given_k| (tests only, m == 1) it uses that nonce instead of
 * drawing one. On failure the pairs are wiped. */
static int compute_pairs(pki_ecdsa_pool *pool, ecdsa_pair *const *out,
                         size_t m, const BIGNUM *given_k) {
  BN_CTX *ctx = pool->ctx;
  size_t i;
  for (i = 0; i < m; i++) {
    ecdsa_pair *p = out[i];
    for (;;) {
      /* k uniform in [1, n-1]: BN_rand_range_ex rejects draws >= n rather
       * than reducing them, so there is no bias (FIPS 186-4 B.5.2). */
      if (given_k != NULL) {
        if (!BN_copy(pool->k, given_k)) goto err;
      } else if (!BN_rand_range_ex(pool->k, 1, pool->order)) {
        goto err;
      }
      if (!EC_POINT_mul(pool->group, pool->point, pool->k, NULL, NULL, ctx) ||
          !EC_POINT_get_affine_coordinates_GFp(pool->group, pool->point,
                                               pool->x, NULL, ctx) ||
          !BN_nnmod(p->r, pool->x, pool->order, ctx)) {
        goto err;
      }
      /* r == 0 happens with probability about 2^-256; a signature with
       * r = 0 is invalid, so draw again (a given k cannot be redrawn). */
      if (!BN_is_zero(p->r)) break;
      if (given_k != NULL) goto err;
    }
    if (!BN_to_montgomery(pool->k_mont[i], pool->k, pool->mont, ctx)) goto err;
  }
  /* Invert every k of the batch at once into the pairs. */
  BIGNUM *kinv[PKI_ECDSA_INVERT_BATCH];
  for (i = 0; i < m; i++) kinv[i] = out[i]->kinv_mont;
  if (!batch_invert_mont(pool, kinv, pool->k_mont, m)) goto err;
  for (i = 0; i < m; i++) {
    ecdsa_pair *p = out[i];
    /* r * d_mont = r d (plain); times kinv_mont = k^-1 r d (plain). */
    if (!BN_mod_mul_montgomery(pool->tmp, p->r, pool->d_mont, pool->mont, ctx) ||
        !BN_mod_mul_montgomery(p->rdk, pool->tmp, p->kinv_mont, pool->mont,
                               ctx)) {
      goto err;
    }
  }
  wipe_scratch(pool, m);
  return 1;

err:
  wipe_scratch(pool, m);
  for (i = 0; i < m; i++) pair_wipe(out[i]);
  ERR_clear_error();
  return 0;
}

int pki_ecdsa_pool_refill(pki_ecdsa_pool *pool, size_t count, pki_err *err) {
  while (count > 0 && pool->available < pool->capacity) {
    size_t m = pool->capacity - pool->available;
    if (m > count) m = count;
    if (m > PKI_ECDSA_INVERT_BATCH) m = PKI_ECDSA_INVERT_BATCH;
    ecdsa_pair *batch[PKI_ECDSA_INVERT_BATCH];
    for (size_t i = 0; i < m; i++) batch[i] = &pool->pairs[pool->available + i];
    if (!compute_pairs(pool, batch, m, NULL)) {
      PKI_ERR(err, PKI_ERR_INTERNAL, "preparing ECDSA nonces failed");
      return 0;
    }
    /* Only now do the new pairs count as ready. */
    pool->available += m;
    count -= m;
  }
  return 1;
}

/* bits2int_mod_n sets pool->e to the leftmost bits of |digest| that fit
 * the order's length, reduced mod n (RFC 6979 2.3.2 and 2.4, the same as
 * FIPS 186-4 6.4). For P-256 with SHA-256 this is the digest itself, minus
 * n if it is n or more. The digest is public: plain arithmetic is fine. */
static int bits2int_mod_n(pki_ecdsa_pool *pool, const uint8_t *digest,
                          size_t digest_len) {
  size_t qlen = BN_num_bits(pool->order);
  size_t take = digest_len;
  if (take * 8 > qlen) take = (qlen + 7) / 8;
  if (BN_bin2bn(digest, take, pool->e) == NULL) return 0;
  if (take * 8 > qlen && !BN_rshift(pool->e, pool->e, (int)(take * 8 - qlen))) {
    return 0;
  }
  /* e < 2^qlen < 2n, so one subtraction reduces it. */
  if (BN_cmp(pool->e, pool->order) >= 0 &&
      !BN_sub(pool->e, pool->e, pool->order)) {
    return 0;
  }
  return 1;
}

/* sign_with_pair computes s from |p| and pool->e and writes (r, s) as DER.
 * The pair is wiped before returning, whatever happens. Sets |*s_zero| when
 * s came out 0 (probability about 2^-256), which the caller answers by
 * signing again with another pair. */
static int sign_with_pair(pki_ecdsa_pool *pool, ecdsa_pair *p, uint8_t *out,
                          size_t *out_len, size_t max_len, int *s_zero,
                          pki_err *err) {
  int ok = 0;
  *s_zero = 0;
  /* e * kinv_mont = e k^-1 (plain); plus k^-1 r d. */
  if (!BN_mod_mul_montgomery(pool->s, pool->e, p->kinv_mont, pool->mont,
                             pool->ctx) ||
      !BN_mod_add_quick(pool->s, pool->s, p->rdk, pool->order)) {
    ERR_clear_error();
    PKI_ERR(err, PKI_ERR_INTERNAL, "ECDSA signing failed");
    goto out;
  }
  if (BN_is_zero(pool->s)) {
    *s_zero = 1;
    goto out;
  }
  /* ECDSA-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER } (RFC 3279 2.2.3). */
  CBB cbb, seq;
  size_t len;
  if (!CBB_init_fixed(&cbb, out, max_len) ||
      !CBB_add_asn1(&cbb, &seq, CBS_ASN1_SEQUENCE) ||
      !BN_marshal_asn1(&seq, p->r) || !BN_marshal_asn1(&seq, pool->s) ||
      !CBB_finish(&cbb, NULL, &len)) {
    CBB_cleanup(&cbb);
    ERR_clear_error();
    PKI_ERR(err, PKI_ERR_INVALID,
            "the signature does not fit in %zu bytes (up to %d needed)",
            max_len, PKI_ECDSA_P256_SIG_MAX);
    goto out;
  }
  *out_len = len;
  ok = 1;
out:
  pair_wipe(p);
  BN_clear(pool->s);
  return ok;
}

int pki_ecdsa_pool_sign(pki_ecdsa_pool *pool, uint8_t *out_der,
                        size_t *out_len, size_t max_len,
                        const uint8_t digest[32], pki_err *err) {
  if (!bits2int_mod_n(pool, digest, 32)) {
    ERR_clear_error();
    PKI_ERR_OOM(err);
    return 0;
  }
  for (;;) {
    ecdsa_pair *p;
    if (pool->available > 0) {
      /* Take the pair out of the pool before using it: from here on no
       * other call can reach it, and sign_with_pair wipes it. */
      p = &pool->pairs[--pool->available];
    } else {
      p = &pool->spare;
      ecdsa_pair *one[1] = {p};
      if (!compute_pairs(pool, one, 1, NULL)) {
        PKI_ERR(err, PKI_ERR_INTERNAL, "preparing an ECDSA nonce failed");
        return 0;
      }
    }
    int s_zero;
    if (!sign_with_pair(pool, p, out_der, out_len, max_len, &s_zero, err)) {
      if (s_zero) continue;
      return 0;
    }
    return 1;
  }
}

int pki_ecdsa_sign_with_k_for_testing(pki_ecdsa_pool *pool, uint8_t *out_der,
                                      size_t *out_len, size_t max_len,
                                      const uint8_t *digest, size_t digest_len,
                                      const uint8_t *k, size_t k_len,
                                      pki_err *err) {
  BIGNUM *given = BN_bin2bn(k, k_len, NULL);
  if (given == NULL || BN_is_zero(given) || BN_cmp(given, pool->order) >= 0) {
    BN_clear_free(given);
    PKI_ERR(err, PKI_ERR_INVALID, "k must be in [1, n-1]");
    return 0;
  }
  ecdsa_pair *one[1] = {&pool->spare};
  int s_zero;
  int ok = bits2int_mod_n(pool, digest, digest_len) &&
           compute_pairs(pool, one, 1, given);
  BN_clear_free(given);
  if (!ok) {
    ERR_clear_error();
    PKI_ERR(err, PKI_ERR_INTERNAL, "ECDSA signing with a given k failed");
    return 0;
  }
  if (!sign_with_pair(pool, &pool->spare, out_der, out_len, max_len, &s_zero,
                      err)) {
    if (s_zero) PKI_ERR(err, PKI_ERR_INVALID, "this k gives s = 0");
    return 0;
  }
  return 1;
}

int pki_ecdsa_batch_invert_for_testing(pki_ecdsa_pool *pool, BIGNUM **values,
                                       size_t count, pki_err *err) {
  if (count > PKI_ECDSA_INVERT_BATCH) {
    PKI_ERR(err, PKI_ERR_INVALID, "at most %d values per batch",
            PKI_ECDSA_INVERT_BATCH);
    return 0;
  }
  for (size_t i = 0; i < count; i++) {
    if (BN_is_negative(values[i]) || BN_is_zero(values[i]) ||
        BN_cmp(values[i], pool->order) >= 0) {
      PKI_ERR(err, PKI_ERR_INVALID, "value %zu is not in [1, n-1]", i);
      return 0;
    }
  }
  int ok = 1;
  for (size_t i = 0; i < count && ok; i++) {
    ok = BN_to_montgomery(values[i], values[i], pool->mont, pool->ctx);
  }
  ok = ok && batch_invert_mont(pool, values, values, count);
  for (size_t i = 0; i < count && ok; i++) {
    ok = BN_from_montgomery(values[i], values[i], pool->mont, pool->ctx);
  }
  wipe_scratch(pool, count);
  if (!ok) {
    ERR_clear_error();
    PKI_ERR(err, PKI_ERR_INTERNAL, "batch inversion failed");
    return 0;
  }
  return 1;
}
