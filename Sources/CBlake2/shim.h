#ifndef TUNVPN_CBLAKE2_SHIM_H
#define TUNVPN_CBLAKE2_SHIM_H
#include <stddef.h>
#include <stdint.h>
#include <blake2.h>
/* The state is a packed struct, which Swift does not lay out; callers allocate this many bytes instead. */
static inline size_t tunvpn_blake2s_state_size(void) { return sizeof(blake2s_state); }
#endif
