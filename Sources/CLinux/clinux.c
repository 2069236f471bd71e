/*
 * clinux.c: implementations of the clinux.h wrappers that need _GNU_SOURCE (recvmmsg, sendmmsg,
 * struct mmsghdr, unshare) or a macro/variadic call Swift cannot make (ioctl by value, CMSG_*).
 * The _Static_asserts pin the mirror types to glibc's real layouts and the option numbers in the
 * header to the system headers.
 */
#define _GNU_SOURCE 1
#include <errno.h>
#include <linux/capability.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <fcntl.h>
#include <unistd.h>
#include <sched.h>
#include <stddef.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <netinet/udp.h>
#include "include/clinux.h"

_Static_assert(sizeof(clinux_mmsghdr) == sizeof(struct mmsghdr), "clinux_mmsghdr size differs from mmsghdr");
_Static_assert(_Alignof(clinux_mmsghdr) == _Alignof(struct mmsghdr), "clinux_mmsghdr alignment differs");
_Static_assert(offsetof(clinux_mmsghdr, msg_hdr) == offsetof(struct mmsghdr, msg_hdr), "msg_hdr offset differs");
_Static_assert(offsetof(clinux_mmsghdr, msg_len) == offsetof(struct mmsghdr, msg_len), "msg_len offset differs");
_Static_assert(CLINUX_SOL_UDP == SOL_UDP, "SOL_UDP differs");
_Static_assert(CLINUX_UDP_SEGMENT == UDP_SEGMENT, "UDP_SEGMENT differs");
_Static_assert(CLINUX_UDP_GRO == UDP_GRO, "UDP_GRO differs");

int clinux_ioctl_ifreq(int fd, unsigned long request, struct ifreq *ifr) {
    return ioctl(fd, request, ifr);
}

int clinux_tun_set_persist(int fd, int on) {
    return ioctl(fd, TUNSETPERSIST, (unsigned long)(on ? 1 : 0));
}

int clinux_tun_set_offload(int fd, unsigned int flags) {
    return ioctl(fd, TUNSETOFFLOAD, (unsigned long)flags);
}

int clinux_tun_set_vnet_hdr_size(int fd, int size) {
    return ioctl(fd, TUNSETVNETHDRSZ, &size);
}

int clinux_recvmmsg(int fd, clinux_mmsghdr *vec, unsigned int vlen, int flags, struct timespec *timeout) {
    return recvmmsg(fd, (struct mmsghdr *)vec, vlen, flags, timeout);
}

int clinux_sendmmsg(int fd, clinux_mmsghdr *vec, unsigned int vlen, int flags) {
    return sendmmsg(fd, (struct mmsghdr *)vec, vlen, flags);
}

struct cmsghdr *clinux_cmsg_firsthdr(struct msghdr *msg) { return CMSG_FIRSTHDR(msg); }
struct cmsghdr *clinux_cmsg_nxthdr(struct msghdr *msg, struct cmsghdr *cmsg) { return CMSG_NXTHDR(msg, cmsg); }
unsigned char *clinux_cmsg_data(struct cmsghdr *cmsg) { return CMSG_DATA(cmsg); }
size_t clinux_cmsg_space(size_t len) { return CMSG_SPACE(len); }
size_t clinux_cmsg_len(size_t len) { return CMSG_LEN(len); }

int clinux_eventfd_cloexec_nonblock(unsigned int initval) {
    return eventfd(initval, EFD_CLOEXEC | EFD_NONBLOCK);
}

int clinux_unshare_network_namespace(void) {
    return unshare(CLONE_NEWNET);
}

int clinux_pipe_cloexec(int fds[2]) {
    return pipe2(fds, O_CLOEXEC);
}

int clinux_accept_cloexec_nonblock(int fd) {
    return accept4(fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
}

int clinux_keep_only_net_admin(int *bounding_dropped) {
    int dropped = 1;
    for (int cap = 0; cap < 64; cap++) {
        if (cap == CAP_NET_ADMIN) continue;
        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0) {
            if (errno == EINVAL) break;  /* past the kernel's last capability */
            dropped = 0;                  /* EPERM: no CAP_SETPCAP (an unprivileged run) */
        }
    }
    if (bounding_dropped) *bounding_dropped = dropped;
    struct __user_cap_header_struct header = { _LINUX_CAPABILITY_VERSION_3, 0 };
    struct __user_cap_data_struct data[2] = { { 0, 0, 0 }, { 0, 0, 0 } };
    data[0].effective = data[0].permitted = data[0].inheritable = 1u << CAP_NET_ADMIN;
    if (syscall(SYS_capset, &header, data) != 0) return -1;
    prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
    return 0;
}

int clinux_drop_all_capabilities_of_thread(void) {
    for (int cap = 0; cap < 64; cap++) {
        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 && errno == EINVAL) break;  /* EPERM: keep going */
    }
    struct __user_cap_header_struct header = { _LINUX_CAPABILITY_VERSION_3, 0 };
    struct __user_cap_data_struct data[2] = { { 0, 0, 0 }, { 0, 0, 0 } };
    if (syscall(SYS_capset, &header, data) != 0) return -1;
    prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
    return 0;
}
