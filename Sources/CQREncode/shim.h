#ifndef TUNVPN_CQRENCODE_SHIM_H
#define TUNVPN_CQRENCODE_SHIM_H
#include <qrencode.h>
#endif
