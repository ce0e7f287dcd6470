/* inspect.h: `pkictl inspect FILE`, a readable summary of a certificate,
 * a CSR or a CRL, in PEM or DER. */
#ifndef PKID_CLIENT_INSPECT_H
#define PKID_CLIENT_INSPECT_H

#include <stdio.h>

#include "lib/err.h"

/* inspect_file prints the summary of |path| to |out|. A file that is not
 * a certificate, a CSR or a CRL, or one that fails to parse, fails with
 * the parser's reason. */
int inspect_file(FILE *out, const char *path, pki_err *err);

#endif /* PKID_CLIENT_INSPECT_H */
