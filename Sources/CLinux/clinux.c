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
#include <grp.h>
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

_Static_assert(CAP_NET_ADMIN == 12, "clinux_cap_net_admin differs from CAP_NET_ADMIN");

/* Drops every capability but `keep` (-1: none) from the bounding set. Returns 0, or -1 with errno (EPERM:
 * no CAP_SETPCAP). */
static int drop_bounding_set(int keep) {
    for (int cap = 0; cap < 64; cap++) {
        if (cap == keep) continue;
        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0) {
            if (errno == EINVAL) return 0; /* past the kernel's last capability */
            return -1;
        }
    }
    return 0;
}

/* 1 when the bounding set holds no capability but `keep`. */
static int bounding_set_only(int keep) {
    for (int cap = 0; cap < 64; cap++) {
        int present = prctl(PR_CAPBSET_READ, cap, 0, 0, 0);
        if (present < 0) break; /* EINVAL: past the kernel's last capability */
        if (present == 1 && cap != keep) return 0;
    }
    return 1;
}

int clinux_drop_privileges(int change_ids, uid_t uid, gid_t gid, int *failed_step, int *bounding_net_admin_only) {
    int step = 0;
#define CLINUX_FAIL(s) do { step = (s); goto fail; } while (0)
    if (change_ids && prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0) CLINUX_FAIL(CLINUX_DROP_STEP_KEEPCAPS);
    /* While still root: reducing the bounding set needs CAP_SETPCAP in the effective set. */
    if (drop_bounding_set(CAP_NET_ADMIN) != 0 && change_ids) CLINUX_FAIL(CLINUX_DROP_STEP_BOUNDING);
    if (change_ids) {
        if (setgroups(0, NULL) != 0) CLINUX_FAIL(CLINUX_DROP_STEP_SETGROUPS);
        if (setresgid(gid, gid, gid) != 0) CLINUX_FAIL(CLINUX_DROP_STEP_SETRESGID);
        if (setresuid(uid, uid, uid) != 0) CLINUX_FAIL(CLINUX_DROP_STEP_SETRESUID);
    }
    /* The uid change emptied the effective set; the permitted set survived (PR_SET_KEEPCAPS). A process
     * that never had CAP_NET_ADMIN (an unprivileged run) cannot gain it: it keeps nothing. */
    struct __user_cap_header_struct header = { _LINUX_CAPABILITY_VERSION_3, 0 };
    struct __user_cap_data_struct data[2] = { { 0, 0, 0 }, { 0, 0, 0 } };
    if (syscall(SYS_capget, &header, data) != 0) CLINUX_FAIL(CLINUX_DROP_STEP_CAPSET);
    uint32_t keep = data[0].permitted & (1u << CAP_NET_ADMIN);
    data[0].effective = data[0].permitted = data[0].inheritable = keep;
    data[1].effective = data[1].permitted = data[1].inheritable = 0;
    if (syscall(SYS_capset, &header, data) != 0) CLINUX_FAIL(CLINUX_DROP_STEP_CAPSET);
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0
        || (keep && prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, CAP_NET_ADMIN, 0, 0) != 0))
        CLINUX_FAIL(CLINUX_DROP_STEP_AMBIENT);
    if (change_ids) prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0); /* cannot fail once set; exec clears it anyway */
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) CLINUX_FAIL(CLINUX_DROP_STEP_NO_NEW_PRIVS);
#undef CLINUX_FAIL
    if (failed_step) *failed_step = 0;
    if (bounding_net_admin_only) *bounding_net_admin_only = bounding_set_only(CAP_NET_ADMIN);
    return 0;
fail:;
    int saved = errno;
    if (failed_step) *failed_step = step;
    if (bounding_net_admin_only) *bounding_net_admin_only = bounding_set_only(CAP_NET_ADMIN);
    errno = saved;
    return -1;
}

int clinux_drop_all_capabilities(void) {
    if (drop_bounding_set(-1) != 0) return 1;
    struct __user_cap_header_struct header = { _LINUX_CAPABILITY_VERSION_3, 0 };
    struct __user_cap_data_struct data[2] = { { 0, 0, 0 }, { 0, 0, 0 } };
    if (syscall(SYS_capset, &header, data) != 0) return 2;
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0) return 3;
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return 4;
    return 0;
}

int clinux_capabilities(uint64_t *effective, uint64_t *permitted, uint64_t *inheritable, uint64_t *ambient) {
    struct __user_cap_header_struct header = { _LINUX_CAPABILITY_VERSION_3, 0 };
    struct __user_cap_data_struct data[2] = { { 0, 0, 0 }, { 0, 0, 0 } };
    if (syscall(SYS_capget, &header, data) != 0) return -1;
    *effective = (uint64_t)data[1].effective << 32 | data[0].effective;
    *permitted = (uint64_t)data[1].permitted << 32 | data[0].permitted;
    *inheritable = (uint64_t)data[1].inheritable << 32 | data[0].inheritable;
    uint64_t amb = 0;
    for (int cap = 0; cap < 64; cap++) {
        int set = prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_IS_SET, cap, 0, 0);
        if (set < 0) break; /* EINVAL: past the kernel's last capability */
        if (set == 1) amb |= (uint64_t)1 << cap;
    }
    *ambient = amb;
    return 0;
}

int clinux_close_descriptors_from(int first) {
#ifdef SYS_close_range
    if (syscall(SYS_close_range, (unsigned int)first, ~0U, 0) == 0) return 0;
    if (errno != ENOSYS) return -1;
#endif
    long max = sysconf(_SC_OPEN_MAX);
    for (long fd = first; fd < (max > 0 ? max : 1024); fd++) close((int)fd);
    return 0;
}

int clinux_disable_core_dumps(void) {
    return prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
}

int clinux_enter_service_thread(void) {
    drop_bounding_set(-1); /* best effort: without CAP_SETPCAP the bounding set stays */
    struct __user_cap_header_struct header = { _LINUX_CAPABILITY_VERSION_3, 0 };
    struct __user_cap_data_struct data[2] = { { 0, 0, 0 }, { 0, 0, 0 } };
    if (syscall(SYS_capget, &header, data) != 0) return -1;
    uint32_t keep = data[0].permitted & ((1u << CAP_SETUID) | (1u << CAP_SETGID));
    data[0].effective = data[0].permitted = keep;
    data[0].inheritable = 0;
    data[1].effective = data[1].permitted = data[1].inheritable = 0;
    if (syscall(SYS_capset, &header, data) != 0) return -1;
    prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
    return 0;
}
