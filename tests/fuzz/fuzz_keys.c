/*
 * fuzz_keys.c: RSA keys generated when a libFuzzer target starts (see
 * fuzz_util.h), so that no key is ever committed with the targets.
 */
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdlib.h>
#include <string.h>

#include "wire/crypto.h"
#include "fuzz_util.h"

/* PEM text of a key (private when priv != 0), malloc'd. */
static char *pem_of(EVP_PKEY *pk, int priv)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *text = NULL, *copy;
    long n;

    if (!b || (priv ? PEM_write_bio_PrivateKey(b, pk, NULL, NULL, 0, NULL, NULL)
                    : PEM_write_bio_PUBKEY(b, pk)) != 1)
        fuzz_die("cannot write a PEM key");
    n = BIO_get_mem_data(b, &text);
    copy = strndup(text, (size_t)n);
    BIO_free(b);
    if (!copy)
        fuzz_die("out of memory");
    return copy;
}

/* A fresh key pair. */
void fuzz_keypair(int bits, struct crypto_key **pub, struct crypto_key **priv,
                  char **pub_b64)
{
    EVP_PKEY *pk = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)bits);
    unsigned char *der = NULL;
    char err[256], *pem;
    int n;

    if (!pk)
        fuzz_die("RSA key generation failed");
    pem = pem_of(pk, 1);
    if (crypto_privkey_load(pem, priv, err, sizeof(err)) < 0)
        fuzz_die("crypto_privkey_load: %s", err);
    free(pem);
    pem = pem_of(pk, 0);
    if (crypto_pubkey_load(pem, pub, err, sizeof(err)) < 0)
        fuzz_die("crypto_pubkey_load: %s", err);
    free(pem);
    n = i2d_PUBKEY(pk, &der);
    if (n <= 0 || !(*pub_b64 = crypto_b64_encode(der, (size_t)n)))
        fuzz_die("cannot encode the public key");
    OPENSSL_free(der);
    EVP_PKEY_free(pk);
}
