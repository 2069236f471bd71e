/*
 * clinux: the small C shim between Swift and the Linux kernel interfaces that Glibc's Swift module
 * does not import (the _IOW ioctl numbers, function-like macros and, without _GNU_SOURCE, mmsghdr): the TUN ioctls of <linux/if_tun.h>, recvmmsg/sendmmsg with
 * their mmsghdr, UDP GSO/GRO option names, eventfd, unshare(CLONE_NEWNET), and the CMSG_* macros.
 *
 * This header deliberately does NOT define _GNU_SOURCE: doing so changes glibc's struct layouts as seen
 * by clang and breaks every Swift file that touches fd_set ("__fds_bits ... not present in definition
 * of 'fd_set'"). Anything that needs _GNU_SOURCE is declared here through a mirror type or a plain
 * prototype and implemented in clinux.c, which does define it (the pattern of SwiftNIO's CNIOLinux).
 *
 * Every symbol carries the clinux_ / CLINUX_ prefix. Ioctl numbers come from the kernel headers
 * (the _IOW encoding differs between architectures), never from literals.
 */
#ifndef TUNVPN_CLINUX_H
#define TUNVPN_CLINUX_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/ioctl.h>
#include <time.h>
#include <net/if.h>
#include <linux/if_tun.h>

/* ---- TUN (<linux/if_tun.h>) -------------------------------------------------------------------- */

/* Interface flags for TUNSETIFF's ifr_flags. Plain integer macros import into Swift as Int32;
 * re-exported under the prefix so Swift code names one module. */
#define CLINUX_IFF_TUN IFF_TUN
#define CLINUX_IFF_NO_PI IFF_NO_PI
#define CLINUX_IFF_MULTI_QUEUE IFF_MULTI_QUEUE
#define CLINUX_IFF_VNET_HDR IFF_VNET_HDR

/* Offload flags for TUNSETOFFLOAD (the later IFF_VNET_HDR work). */
#define CLINUX_TUN_F_CSUM TUN_F_CSUM
#define CLINUX_TUN_F_TSO4 TUN_F_TSO4
#define CLINUX_TUN_F_TSO6 TUN_F_TSO6
#define CLINUX_TUN_F_TSO_ECN TUN_F_TSO_ECN
#ifdef TUN_F_USO4
#define CLINUX_TUN_F_USO4 TUN_F_USO4
#define CLINUX_TUN_F_USO6 TUN_F_USO6
#else /* bookworm's linux-libc-dev (6.1) predates USO; newer kernels accept these values */
#define CLINUX_TUN_F_USO4 0x20
#define CLINUX_TUN_F_USO6 0x40
#endif

/* _IOW(...) request numbers never import into Swift, so they are returned from functions. */
static inline unsigned long clinux_TUNSETIFF(void) { return TUNSETIFF; }
static inline unsigned long clinux_TUNSETPERSIST(void) { return TUNSETPERSIST; }
static inline unsigned long clinux_TUNSETOFFLOAD(void) { return TUNSETOFFLOAD; }
static inline unsigned long clinux_TUNSETVNETHDRSZ(void) { return TUNSETVNETHDRSZ; }

/* ioctl(fd, request, &ifr): TUNSETIFF and the SIOC[GS]IF* calls. Returns -1 with errno on failure. */
int clinux_ioctl_ifreq(int fd, unsigned long request, struct ifreq *ifr);
/* ioctl(fd, TUNSETPERSIST, (unsigned long)on): TUNSETPERSIST takes its argument by value. */
int clinux_tun_set_persist(int fd, int on);
/* ioctl(fd, TUNSETOFFLOAD, flags): the flags are passed by value, which Swift's ioctl overloads
 * cannot express ("Variadic function is unavailable"). */
int clinux_tun_set_offload(int fd, unsigned int flags);
/* ioctl(fd, TUNSETVNETHDRSZ, &size). */
int clinux_tun_set_vnet_hdr_size(int fd, int size);

/* ---- recvmmsg / sendmmsg ------------------------------------------------------------------------ */

/* Mirror of glibc's struct mmsghdr (only visible with _GNU_SOURCE); clinux.c checks the layout
 * with _Static_assert. */
typedef struct clinux_mmsghdr {
    struct msghdr msg_hdr;
    unsigned int msg_len;
} clinux_mmsghdr;

/* recvmmsg(2). timeout may be NULL. */
int clinux_recvmmsg(int fd, clinux_mmsghdr *vec, unsigned int vlen, int flags, struct timespec *timeout);
/* sendmmsg(2). */
int clinux_sendmmsg(int fd, clinux_mmsghdr *vec, unsigned int vlen, int flags);

/* ---- UDP options (<netinet/udp.h>; SOL_UDP is missing from Glibc's Swift module) ---------------- */

#define CLINUX_SOL_UDP 17
#define CLINUX_UDP_SEGMENT 103 /* setsockopt(SOL_UDP, UDP_SEGMENT, u16 gso_size); checked in clinux.c */
#define CLINUX_UDP_GRO 104     /* setsockopt(SOL_UDP, UDP_GRO, int on); checked in clinux.c */

/* ---- ancillary data (the CMSG_* macros do not import) -------------------------------------------- */

/* CMSG_FIRSTHDR(msg); NULL when there is none. */
struct cmsghdr *clinux_cmsg_firsthdr(struct msghdr *msg);
/* CMSG_NXTHDR(msg, cmsg); NULL after the last. */
struct cmsghdr *clinux_cmsg_nxthdr(struct msghdr *msg, struct cmsghdr *cmsg);
/* CMSG_DATA(cmsg). */
unsigned char *clinux_cmsg_data(struct cmsghdr *cmsg);
/* CMSG_SPACE(len) and CMSG_LEN(len). */
size_t clinux_cmsg_space(size_t len);
size_t clinux_cmsg_len(size_t len);

/* ---- eventfd and namespaces --------------------------------------------------------------------- */

/* eventfd(initval, EFD_CLOEXEC | EFD_NONBLOCK): used to wake threads blocked in poll() on close. */
int clinux_eventfd_cloexec_nonblock(unsigned int initval);
/* unshare(CLONE_NEWNET): moves the CALLING THREAD into a fresh network namespace (tests only). */
int clinux_unshare_network_namespace(void);

/* ---- privileges (capabilities(7), prctl(2), setresuid(2)) -------------------------------------- */

/* The steps of clinux_drop_privileges, in order; *failed_step names the one that failed. */
#define CLINUX_DROP_STEP_KEEPCAPS 1     /* prctl(PR_SET_KEEPCAPS, 1) */
#define CLINUX_DROP_STEP_BOUNDING 2     /* prctl(PR_CAPBSET_DROP, every capability but CAP_NET_ADMIN) */
#define CLINUX_DROP_STEP_SETGROUPS 3    /* setgroups(0, NULL) */
#define CLINUX_DROP_STEP_SETRESGID 4    /* setresgid(gid, gid, gid) */
#define CLINUX_DROP_STEP_SETRESUID 5    /* setresuid(uid, uid, uid) */
#define CLINUX_DROP_STEP_CAPSET 6       /* capset: effective = permitted = inheritable = CAP_NET_ADMIN */
#define CLINUX_DROP_STEP_AMBIENT 7      /* prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, CAP_NET_ADMIN) */
#define CLINUX_DROP_STEP_NO_NEW_PRIVS 8 /* prctl(PR_SET_NO_NEW_PRIVS, 1) */

/**
 * Reduces the process to CAP_NET_ADMIN, as user uid/gid when change_ids is non-zero:
 *   1. (change_ids) PR_SET_KEEPCAPS, so the permitted set survives the uid change;
 *   2. drops every capability but CAP_NET_ADMIN from the calling thread's bounding set (needs CAP_SETPCAP:
 *      a failure is an error when change_ids is set, and skipped otherwise, an unprivileged run);
 *   3. (change_ids) setgroups(0, NULL), setresgid(gid x3), setresuid(uid x3): glibc applies these to
 *      every thread of the process;
 *   4. capset(2): effective, permitted and inheritable = {CAP_NET_ADMIN} (calling thread), or nothing when
 *      CAP_NET_ADMIN was not permitted to begin with;
 *   5. raises CAP_NET_ADMIN in the ambient set, so programs it executes (ip, nft) keep it;
 *   6. clears PR_SET_KEEPCAPS again and sets PR_SET_NO_NEW_PRIVS.
 * Capabilities are per thread: call it on the thread that later creates the others.
 * Returns 0, or -1 with errno set and *failed_step = CLINUX_DROP_STEP_*. *bounding_net_admin_only is set
 * to 1 when the bounding set holds nothing but CAP_NET_ADMIN afterwards (PR_CAPBSET_READ), 0 otherwise.
 */
int clinux_drop_privileges(int change_ids, uid_t uid, gid_t gid, int *failed_step, int *bounding_net_admin_only);

/** capget(2) of the calling thread: the 64-bit effective, permitted and inheritable sets, and the ambient
 * set (PR_CAP_AMBIENT_IS_SET for each capability). Returns 0, or -1 with errno. */
/** For a process that stays uid 0 but needs no capability (the DNS agent, docs/ROUTING.md "DNS"): empties
 * the bounding set (needs CAP_SETPCAP, which root has), the effective, permitted, inheritable and ambient
 * sets of the calling thread, and sets no_new_privs. Call it before any other thread exists. Returns 0, or
 * the failed step with errno set: 1 bounding set, 2 capset, 3 ambient set, 4 no_new_privs. */
int clinux_drop_all_capabilities(void);

int clinux_capabilities(uint64_t *effective, uint64_t *permitted, uint64_t *inheritable, uint64_t *ambient);

/** prctl(PR_SET_DUMPABLE, 0): no core dumps (which would hold key material) and no ptrace by the same
 * non-root user. Returns 0, or -1 with errno. */
int clinux_disable_core_dumps(void);

/** close_range(first, ~0U, 0): closes every descriptor from `first` on, for a forked child that must not
 * keep its parent's files open (close(2) one by one where the kernel lacks close_range, before 5.9).
 * Returns 0, or -1 with errno. */
int clinux_close_descriptors_from(int first);

/** The number of CAP_NET_ADMIN in <linux/capability.h>, for bit masks in Swift. */
static inline int clinux_cap_net_admin(void) { return 12; }

/** pipe2(fds, O_CLOEXEC): a pipe whose ends are closed across exec (GNU extension, so wrapped here). */
int clinux_pipe_cloexec(int fds[2]);

/** accept4(fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK): a connection that is never inherited across exec
 * (GNU extension, so wrapped here). */
int clinux_accept_cloexec_nonblock(int fd);

/** For the calling thread only (capabilities are per thread), a thread that needs no privilege of its own:
 * empties its bounding set as far as CAP_SETPCAP allows, reduces its effective and permitted sets to
 * CAP_SETUID and CAP_SETGID where it has them (nothing else; inheritable and ambient to nothing) and sets
 * no_new_privs. The two stay because glibc applies a later setgroups/setresgid/setresuid of the process to
 * every thread and aborts the process when a thread is refused; that uid change then clears them.
 * Returns 0, or -1 with errno from capget/capset. */
int clinux_enter_service_thread(void);

#endif /* TUNVPN_CLINUX_H */
