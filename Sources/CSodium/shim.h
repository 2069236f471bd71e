#ifndef TUNVPN_CSODIUM_SHIM_H
#define TUNVPN_CSODIUM_SHIM_H
#include <sodium.h>
#endif
