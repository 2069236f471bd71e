// libpq's declarations only (PostgreSQL's C client library, Debian libpq-dev). The library itself is not
// linked: Control/Registry/LibPQ.swift opens libpq.so.5 with dlopen(3) when a registry is first used.
#include <postgresql/libpq-fe.h>
