#ifndef TUNVPN_CLINUX_H
#define TUNVPN_CLINUX_H
#endif
