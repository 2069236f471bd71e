// libpq, PostgreSQL's C client library (Debian libpq-dev), found by pkg-config.
#include <libpq-fe.h>
