// prober makes raw escape attempts from inside a clawrun container, for the
// escape suite in test/escape_test.go. busybox cannot make most of these
// calls (clone with namespace flags, bpf, io_uring, int 0x80, ...), so this
// static program makes each one directly and prints what the kernel said.
//
// Usage: prober ATTEMPT[:ARG[:ARG]]...
//
// Each attempt runs in its own forked child (a crash or a kill then belongs
// to that attempt alone) and prints exactly one line:
//
//	ATTEMPT=RESULT
//
// RESULT is the errno name of a refused call (EPERM, EROFS, ...), "OK" when
// the call succeeded (for an escape attempt: a hole), "SIG<name>" when the
// attempt's child was killed, or an attempt-specific word described at the
// attempt. The prober never does damage when an attempt succeeds: files
// opened for writing are closed unwritten, namespaces and mounts made by a
// successful call die with the child.
//
// Built by the test with `gcc -static`. int 0x80 and x32 exist on x86_64
// only; elsewhere those attempts report ENOSYS and UNSUPPORTED.
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <linux/bpf.h>
#include <linux/io_uring.h>
#include <linux/keyctl.h>
#include <linux/perf_event.h>
#include <linux/reboot.h>
#include <linux/sched.h>

#ifndef AF_VSOCK
#define AF_VSOCK 40
#endif
#ifndef AF_ALG
#define AF_ALG 38
#endif

static char out[8192];

// result formats the attempt's result; the child prints it and exits.
static void result(const char *fmt, ...) {
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(out, sizeof out, fmt, ap);
	va_end(ap);
}

static const char *ename(int e) {
	const char *n = strerrorname_np(e);
	return n ? n : "EUNKNOWN";
}

// rc turns a syscall's return value into a result: "OK" or the errno name.
static void rc(long r) {
	if (r < 0)
		result("%s", ename(errno));
	else
		result("OK");
}

// --- file system ---------------------------------------------------------

// read:PATH reads PATH to the end: READ:<bytes> or the errno.
static void do_read(const char *path) {
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		rc(-1);
		return;
	}
	char buf[4096];
	long total = 0, n;
	while ((n = read(fd, buf, sizeof buf)) > 0)
		total += n;
	if (n < 0)
		result("%s", ename(errno));
	else
		result("READ:%ld", total);
	close(fd);
}

// readdir:PATH counts the entries of a directory besides . and ..:
// ENTRIES:<n> or the errno.
static void do_readdir(const char *path) {
	DIR *d = opendir(path);
	if (!d) {
		rc(-1);
		return;
	}
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			n++;
	closedir(d);
	result("ENTRIES:%d", n);
}

// openw:PATH opens an existing file for writing and closes it unwritten.
static void do_openw(const char *path) {
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd >= 0)
		close(fd);
	rc(fd);
}

// create:PATH creates a new file (and removes it again if that worked).
static void do_create(const char *path) {
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd >= 0) {
		close(fd);
		unlink(path);
	}
	rc(fd);
}

static void do_mkdir(const char *path) {
	int r = mkdir(path, 0755);
	if (r == 0)
		rmdir(path);
	rc(r);
}

// fill:PATH:MB writes up to MB MiB into a new file: WROTE:<MiB>:<errno of
// the write that stopped it, or DONE>.
static void do_fill(const char *path, const char *mbs) {
	long want = atol(mbs), mb = 0;
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		rc(-1);
		return;
	}
	static char chunk[1 << 20];
	memset(chunk, 'x', sizeof chunk);
	const char *stop = "DONE";
	for (; mb < want; mb++) {
		ssize_t w = write(fd, chunk, sizeof chunk);
		if (w != (ssize_t)sizeof chunk) {
			stop = w < 0 ? ename(errno) : "SHORT";
			break;
		}
	}
	close(fd);
	unlink(path);
	result("WROTE:%ld:%s", mb, stop);
}

// devnull: what /dev/null is: CHR:<major>:<minor>, or the file type.
static void do_devnull(const char *path) {
	struct stat st;
	if (lstat(path, &st) < 0) {
		rc(-1);
		return;
	}
	if (S_ISCHR(st.st_mode))
		result("CHR:%u:%u", major(st.st_rdev), minor(st.st_rdev));
	else if (S_ISLNK(st.st_mode))
		result("SYMLINK");
	else
		result("MODE:%o", st.st_mode & S_IFMT);
}

// --- mounts ----------------------------------------------------------------

static void do_mount(const char *what) {
	mkdir("/tmp/mnt", 0755);
	if (!strcmp(what, "proc"))
		rc(mount("proc", "/tmp/mnt", "proc", 0, NULL));
	else if (!strcmp(what, "tmpfs"))
		rc(mount("tmpfs", "/tmp/mnt", "tmpfs", 0, NULL));
	else if (!strcmp(what, "bind"))
		rc(mount("/", "/tmp/mnt", NULL, MS_BIND | MS_REC, NULL));
	else if (!strcmp(what, "cgroup")) // CVE-2022-0492: a v1 hierarchy with release_agent
		rc(mount("cgroup", "/tmp/mnt", "cgroup", 0, "rdma"));
	else if (!strcmp(what, "cgroup2"))
		rc(mount("cgroup2", "/tmp/mnt", "cgroup2", 0, NULL));
	else if (!strcmp(what, "sysfs"))
		rc(mount("sysfs", "/tmp/mnt", "sysfs", 0, NULL));
	else
		result("BADARG");
}

// remount:PATH makes a read-only mount read-write.
static void do_remount(const char *path) {
	rc(mount(NULL, path, NULL, MS_REMOUNT | MS_BIND, NULL));
}

// remount-sb:PATH remounts the superblock behind PATH read-write.
static void do_remount_sb(const char *path) {
	rc(mount(NULL, path, NULL, MS_REMOUNT, NULL));
}

// umount:PATH unmounts (e.g. a mask over /proc/keys).
static void do_umount(const char *path) { rc(umount2(path, MNT_DETACH)); }

// mount-setattr:PATH clears MOUNT_ATTR_RDONLY through the new mount API.
static void do_mount_setattr(const char *path) {
	struct {
		uint64_t set, clr, propagation, userns_fd;
	} attr = {0, 0x1 /* MOUNT_ATTR_RDONLY */, 0, 0};
	rc(syscall(SYS_mount_setattr, AT_FDCWD, path, 0, &attr, sizeof attr));
}

static void do_fsopen(void) {
	long fd = syscall(SYS_fsopen, "tmpfs", 0);
	rc(fd);
}

static void do_open_tree(void) {
	// OPEN_TREE_CLONE (1) detaches a copy of a mount that could then be
	// attached anywhere with move_mount.
	long fd = syscall(SYS_open_tree, AT_FDCWD, "/", 1 | O_CLOEXEC);
	rc(fd);
}

static void do_move_mount(void) {
	rc(syscall(SYS_move_mount, AT_FDCWD, "/proc", AT_FDCWD, "/tmp", 0));
}

static void do_pivot_root(void) {
	mkdir("/tmp/old", 0755);
	rc(syscall(SYS_pivot_root, "/tmp", "/tmp/old"));
}

static void do_chroot(void) { rc(chroot("/tmp")); }

// --- namespaces --------------------------------------------------------------

static int ns_flag(const char *ns) {
	if (!strcmp(ns, "user")) return CLONE_NEWUSER;
	if (!strcmp(ns, "mnt")) return CLONE_NEWNS;
	if (!strcmp(ns, "net")) return CLONE_NEWNET;
	if (!strcmp(ns, "pid")) return CLONE_NEWPID;
	if (!strcmp(ns, "uts")) return CLONE_NEWUTS;
	if (!strcmp(ns, "ipc")) return CLONE_NEWIPC;
	if (!strcmp(ns, "cgroup")) return CLONE_NEWCGROUP;
	return -1;
}

static void do_unshare(const char *ns) {
	int f = ns_flag(ns);
	if (f < 0) {
		result("BADARG");
		return;
	}
	rc(unshare(f));
}

// clone:NS calls the raw clone syscall with a namespace flag (not through
// glibc, which might try clone3 first).
static void do_clone(const char *ns) {
	int f = ns_flag(ns);
	if (f < 0) {
		result("BADARG");
		return;
	}
	long pid = syscall(SYS_clone, (unsigned long)f | SIGCHLD, 0, 0, 0, 0);
	if (pid == 0)
		_exit(0);
	if (pid > 0)
		waitpid(pid, NULL, 0);
	rc(pid);
}

static void do_clone3(const char *ns) {
	int f = ns_flag(ns);
	if (f < 0) {
		result("BADARG");
		return;
	}
	struct clone_args args;
	memset(&args, 0, sizeof args);
	args.flags = (uint64_t)f;
	args.exit_signal = SIGCHLD;
	long pid = syscall(SYS_clone3, &args, sizeof args);
	if (pid == 0)
		_exit(0);
	if (pid > 0)
		waitpid(pid, NULL, 0);
	rc(pid);
}

static void do_setns(const char *path) {
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		rc(-1);
		return;
	}
	rc(setns(fd, 0));
	close(fd);
}

// --- processes ---------------------------------------------------------------

static long target_pid(const char *s) {
	if (!strcmp(s, "parent")) return getppid();
	return atol(s);
}

static void do_ptrace(const char *who) {
	if (!strcmp(who, "traceme")) {
		rc(syscall(SYS_ptrace, 0 /* PTRACE_TRACEME */, 0, 0, 0));
		return;
	}
	// PTRACE_ATTACH (16); detached again by our exit.
	rc(syscall(SYS_ptrace, 16, target_pid(who), 0, 0));
}

static void do_vm_readv(const char *who) {
	char local[8], remote[8] = {0};
	struct iovec l = {local, sizeof local}, r = {remote, sizeof remote};
	rc(syscall(SYS_process_vm_readv, target_pid(who), &l, 1, &r, 1, 0));
}

// kill:PID:SIG signals a process by its number in the caller's pid namespace.
static void do_kill(const char *pid, const char *sig) {
	rc(kill(atol(pid), sig ? atoi(sig) : 0));
}

// pids lists the pids this process sees in /proc: PIDS:<n>:<list>.
static void do_pids(void) {
	DIR *d = opendir("/proc");
	if (!d) {
		rc(-1);
		return;
	}
	char list[4096] = "";
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (e->d_name[0] < '0' || e->d_name[0] > '9')
			continue;
		n++;
		if (strlen(list) + strlen(e->d_name) + 2 < sizeof list) {
			if (*list)
				strcat(list, ",");
			strcat(list, e->d_name);
		}
	}
	closedir(d);
	result("PIDS:%d:%s", n, list);
}

// forkbomb:MAX forks children that wait, until fork fails or MAX is reached,
// then kills them all: FORKS:<n>:<errno or MAX>.
static void do_forkbomb(const char *maxs) {
	long max = atol(maxs), n = 0;
	static pid_t kids[100000];
	const char *stop = "MAX";
	if (max > (long)(sizeof kids / sizeof kids[0]))
		max = sizeof kids / sizeof kids[0];
	for (; n < max; n++) {
		pid_t p = fork();
		if (p == 0) {
			pause();
			_exit(0);
		}
		if (p < 0) {
			stop = ename(errno);
			break;
		}
		kids[n] = p;
	}
	for (long i = 0; i < n; i++)
		kill(kids[i], SIGKILL);
	for (long i = 0; i < n; i++)
		waitpid(kids[i], NULL, 0);
	result("FORKS:%ld:%s", n, stop);
}

// memhog:MB allocates and touches MB MiB: TOUCHED:<MiB> if it survived
// (a memory limit kills it instead, reported as SIGKILL), or ENOMEM.
static void do_memhog(const char *mbs) {
	long want = atol(mbs);
	for (long i = 0; i < want; i++) {
		char *p = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED) {
			result("%s", ename(errno));
			return;
		}
		memset(p, 1, 1 << 20);
	}
	result("TOUCHED:%ld", want);
}

// --- network -----------------------------------------------------------------

// connect-tcp:IP:PORT
static void do_connect_tcp(const char *ip, const char *port) {
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		result("SOCKET-%s", ename(errno));
		return;
	}
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(atoi(port))};
	inet_pton(AF_INET, ip, &a.sin_addr);
	rc(connect(fd, (struct sockaddr *)&a, sizeof a));
	close(fd);
}

// connect-unix:PATH, or connect-abstract:NAME for the abstract namespace,
// which is per network namespace.
static void do_connect_unix(const char *name, int abstract) {
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		result("SOCKET-%s", ename(errno));
		return;
	}
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	socklen_t len;
	if (abstract) {
		strncpy(a.sun_path + 1, name, sizeof a.sun_path - 2);
		len = offsetof(struct sockaddr_un, sun_path) + 1 + strlen(name);
	} else {
		strncpy(a.sun_path, name, sizeof a.sun_path - 1);
		len = sizeof a;
	}
	rc(connect(fd, (struct sockaddr *)&a, len));
	close(fd);
}

// ifaces lists network interfaces: IFACES:<name,...>.
static void do_ifaces(void) {
	struct if_nameindex *ifs = if_nameindex();
	if (!ifs) {
		rc(-1);
		return;
	}
	char list[1024] = "";
	for (struct if_nameindex *i = ifs; i->if_index; i++) {
		if (*list)
			strncat(list, ",", sizeof list - strlen(list) - 1);
		strncat(list, i->if_name, sizeof list - strlen(list) - 1);
	}
	if_freenameindex(ifs);
	result("IFACES:%s", list);
}

static void do_socket(const char *kind) {
	int fd;
	if (!strcmp(kind, "inet"))
		fd = socket(AF_INET, SOCK_STREAM, 0);
	else if (!strcmp(kind, "inet6"))
		fd = socket(AF_INET6, SOCK_STREAM, 0);
	else if (!strcmp(kind, "udp"))
		fd = socket(AF_INET, SOCK_DGRAM, 0);
	else if (!strcmp(kind, "raw"))
		fd = socket(AF_INET, SOCK_RAW, IPPROTO_ICMP);
	else if (!strcmp(kind, "packet"))
		fd = socket(AF_PACKET, SOCK_RAW, htons(3 /* ETH_P_ALL */));
	else if (!strcmp(kind, "vsock"))
		fd = socket(AF_VSOCK, SOCK_STREAM, 0);
	else if (!strcmp(kind, "alg"))
		fd = socket(AF_ALG, SOCK_SEQPACKET, 0);
	else if (!strcmp(kind, "netlink-audit"))
		fd = socket(AF_NETLINK, SOCK_RAW, 9 /* NETLINK_AUDIT */);
	else if (!strcmp(kind, "unix"))
		fd = socket(AF_UNIX, SOCK_STREAM, 0);
	else {
		result("BADARG");
		return;
	}
	if (fd >= 0)
		close(fd);
	rc(fd);
}

// --- kernel interfaces ---------------------------------------------------------

static void do_keyctl(void) {
	rc(syscall(SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, "clawrun-escape"));
}

static void do_add_key(void) {
	rc(syscall(SYS_add_key, "user", "clawrun-escape", "x", 1, KEY_SPEC_PROCESS_KEYRING));
}

static void do_request_key(void) {
	rc(syscall(SYS_request_key, "user", "clawrun-escape", NULL, 0));
}

static void do_bpf(void) {
	union bpf_attr attr;
	memset(&attr, 0, sizeof attr);
	attr.map_type = BPF_MAP_TYPE_ARRAY;
	attr.key_size = 4;
	attr.value_size = 4;
	attr.max_entries = 1;
	long fd = syscall(SYS_bpf, BPF_MAP_CREATE, &attr, sizeof attr);
	if (fd >= 0)
		close(fd);
	rc(fd);
}

static void do_io_uring(void) {
	struct io_uring_params p;
	memset(&p, 0, sizeof p);
	long fd = syscall(SYS_io_uring_setup, 1, &p);
	if (fd >= 0)
		close(fd);
	rc(fd);
}

static void do_userfaultfd(void) {
	long fd = syscall(SYS_userfaultfd, O_CLOEXEC);
	if (fd >= 0)
		close(fd);
	rc(fd);
}

static void do_perf(void) {
	struct perf_event_attr attr;
	memset(&attr, 0, sizeof attr);
	attr.type = PERF_TYPE_SOFTWARE;
	attr.size = sizeof attr;
	attr.config = PERF_COUNT_SW_CPU_CLOCK;
	attr.disabled = 1;
	attr.exclude_kernel = 1;
	attr.exclude_hv = 1;
	long fd = syscall(SYS_perf_event_open, &attr, 0, -1, -1, 0);
	if (fd >= 0)
		close(fd);
	rc(fd);
}

// open-by-handle: the "shocker" escape: a handle for inode 2 (the root of
// most ext4 file systems) opened relative to a mount of the host's.
static void do_open_by_handle(void) {
	struct {
		unsigned int handle_bytes;
		int handle_type;
		unsigned char f_handle[8];
	} h = {8, 1, {0x02, 0, 0, 0, 0, 0, 0, 0}};
	int mfd = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	long fd = syscall(SYS_open_by_handle_at, mfd, &h, O_RDONLY);
	if (fd >= 0)
		close(fd);
	rc(fd);
}

static void do_name_to_handle(void) {
	struct {
		unsigned int handle_bytes;
		int handle_type;
		unsigned char f_handle[128];
	} h = {128, 0, {0}};
	int mount_id;
	rc(syscall(SYS_name_to_handle_at, AT_FDCWD, "/", &h, &mount_id, 0));
}

// mknod:c|b:PATH makes /dev/null's (1,3) or sda's (8,0) device node.
static void do_mknod(const char *kind, const char *path) {
	mode_t m = kind[0] == 'b' ? S_IFBLK : S_IFCHR;
	dev_t d = kind[0] == 'b' ? makedev(8, 0) : makedev(1, 3);
	int r = mknod(path, m | 0600, d);
	if (r == 0)
		unlink(path);
	rc(r);
}

static void do_sethostname(const char *name) { rc(sethostname(name, strlen(name))); }
static void do_setdomainname(const char *name) { rc(setdomainname(name, strlen(name))); }

static void do_init_module(void) { rc(syscall(SYS_init_module, "", 0, "")); }
static void do_finit_module(void) { rc(syscall(SYS_finit_module, 0, "", 0)); }
static void do_kexec(void) { rc(syscall(SYS_kexec_load, 0, 0, NULL, 0)); }

// reboot with CAD_OFF: if it were allowed it would only disable
// Ctrl-Alt-Del, never reboot anything.
static void do_reboot(void) {
	rc(syscall(SYS_reboot, LINUX_REBOOT_MAGIC1, LINUX_REBOOT_MAGIC2, LINUX_REBOOT_CMD_CAD_OFF, NULL));
}

static void do_swapon(void) { rc(syscall(SYS_swapon, "/tmp/swap", 0)); }
static void do_acct(void) { rc(syscall(SYS_acct, NULL)); }

// clock-settime sets the clock to what it already is.
static void do_clock_settime(void) {
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	rc(clock_settime(CLOCK_REALTIME, &ts));
}

static void do_iopl(void) { rc(syscall(SYS_iopl, 3)); }
static void do_ioperm(void) { rc(syscall(SYS_ioperm, 0x80, 1, 1)); }
static void do_syslog(void) {
	char buf[64];
	rc(syscall(SYS_syslog, 3 /* SYSLOG_ACTION_READ_ALL */, buf, sizeof buf));
}

// personality: READ_IMPLIES_EXEC changes how the kernel maps memory.
static void do_personality(void) { rc(syscall(SYS_personality, 0x0400000)); }

// int80:NAME makes an i386 system call through int 0x80 (the compat entry
// that filters written for x86_64 used to miss): getpid (20), unshare (310)
// with CLONE_NEWUSER, chroot (61) of a null path.
#if defined(__x86_64__)
static long int80(long nr, long a, long b, long c) {
	long ret;
	__asm__ volatile("int $0x80" : "=a"(ret) : "a"(nr), "b"(a), "c"(b), "d"(c) : "memory");
	return ret;
}
#else
static long int80(long nr, long a, long b, long c) {
	(void)nr, (void)a, (void)b, (void)c;
	return -ENOSYS;
}
#endif

static void do_int80(const char *name) {
	long r;
	if (!strcmp(name, "getpid"))
		r = int80(20, 0, 0, 0);
	else if (!strcmp(name, "unshare"))
		r = int80(310, CLONE_NEWUSER, 0, 0);
	else if (!strcmp(name, "chroot"))
		r = int80(61, 0, 0, 0);
	else {
		result("BADARG");
		return;
	}
	if (r < 0 && r > -4096)
		result("%s", ename((int)-r));
	else
		result("OK");
}

// x32:getpid uses the x32 ABI (syscall number with bit 30 set).
static void do_x32(void) {
#if defined(__x86_64__)
	rc(syscall(0x40000000 | SYS_getpid));
#else
	result("UNSUPPORTED");
#endif
}

// --- identity and leaks --------------------------------------------------------

static unsigned long long status_hex(const char *status, const char *key) {
	const char *p = strstr(status, key);
	if (!p)
		return ~0ULL;
	return strtoull(p + strlen(key), NULL, 16);
}

static void read_status(char *buf, size_t n) {
	buf[0] = 0;
	int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	ssize_t r = read(fd, buf, n - 1);
	buf[r > 0 ? r : 0] = 0;
	close(fd);
}

// caps: ZERO when every capability set is empty and no_new_privs is set,
// else the offending values; with the real, effective and saved uid and gid.
static void do_caps(void) {
	char st[8192];
	read_status(st, sizeof st);
	const char *keys[] = {"CapInh:", "CapPrm:", "CapEff:", "CapBnd:", "CapAmb:"};
	char bad[512] = "";
	for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
		unsigned long long v = status_hex(st, keys[i]);
		if (v != 0)
			snprintf(bad + strlen(bad), sizeof bad - strlen(bad), "%s%llx,", keys[i], v);
	}
	const char *nnp = strstr(st, "NoNewPrivs:");
	if (!nnp || atoi(nnp + strlen("NoNewPrivs:")) != 1)
		snprintf(bad + strlen(bad), sizeof bad - strlen(bad), "NoNewPrivs:0,");
	uid_t r, e, s;
	gid_t gr, ge, gs;
	getresuid(&r, &e, &s);
	getresgid(&gr, &ge, &gs);
	if (*bad)
		result("NONZERO:%suid=%u/%u/%u:gid=%u/%u/%u", bad, r, e, s, gr, ge, gs);
	else
		result("ZERO:uid=%u/%u/%u:gid=%u/%u/%u", r, e, s, gr, ge, gs);
}

// under:FD reports whether the directory open at fd lies inside our root:
// walking up with ".." must reach "/" (the walk stops at the process root);
// a directory outside it reaches the host's root, whose ".." is itself.
static int dir_under_root(int fd) {
	struct stat root, cur, up;
	if (stat("/", &root) < 0)
		return -1;
	int d = dup(fd);
	for (int i = 0; i < 4096; i++) {
		if (fstat(d, &cur) < 0) {
			close(d);
			return -1;
		}
		if (cur.st_dev == root.st_dev && cur.st_ino == root.st_ino) {
			close(d);
			return 1;
		}
		int p = openat(d, "..", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		close(d);
		if (p < 0)
			return -1;
		if (fstat(p, &up) < 0) {
			close(p);
			return -1;
		}
		if (up.st_dev == cur.st_dev && up.st_ino == cur.st_ino) {
			close(p);
			return 0; // a root that is not ours
		}
		d = p;
	}
	close(d);
	return 0;
}

// fds checks every open file descriptor: a directory must lie under our
// root, a file named by a path must be that path inside the container.
// CLEAN:<fd list> or LEAK:<fd>-><target>.
static void do_fds(void) {
	DIR *d = opendir("/proc/self/fd");
	if (!d) {
		rc(-1);
		return;
	}
	int self = dirfd(d);
	char seen[1024] = "", leaks[2048] = "";
	struct dirent *e;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		int fd = atoi(e->d_name);
		if (fd == self)
			continue;
		char link[PATH_MAX + 1] = "", p[64];
		snprintf(p, sizeof p, "/proc/self/fd/%d", fd);
		ssize_t n = readlink(p, link, PATH_MAX);
		link[n > 0 ? n : 0] = 0;
		snprintf(seen + strlen(seen), sizeof seen - strlen(seen), "%d->%s,", fd, link);
		struct stat fst, pst;
		if (fstat(fd, &fst) < 0)
			continue;
		int leak = 0;
		if (S_ISDIR(fst.st_mode))
			leak = dir_under_root(fd) != 1;
		else if (link[0] == '/')
			leak = stat(link, &pst) < 0 || pst.st_dev != fst.st_dev || pst.st_ino != fst.st_ino;
		if (leak)
			snprintf(leaks + strlen(leaks), sizeof leaks - strlen(leaks), "%d->%s,", fd, link);
	}
	closedir(d);
	if (*leaks)
		result("LEAK:%s", leaks);
	else
		result("CLEAN:%s", seen);
}

// cwd: the working directory must lie under our root (CVE-2024-21626 left
// runc's init with a host directory as its cwd). CWD:<path>, or
// OUTSIDE:<what getcwd said>.
static void do_cwd(void) {
	char buf[PATH_MAX];
	const char *got = getcwd(buf, sizeof buf) ? buf : ename(errno);
	int fd = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int under = fd >= 0 ? dir_under_root(fd) : -1;
	if (fd >= 0)
		close(fd);
	if (under == 1 && got == buf && buf[0] == '/')
		result("CWD:%s", buf);
	else
		result("OUTSIDE:%s", got);
}

// environ:SECRET looks for SECRET in the environment of every process we can
// see: CLEAN:<n processes read> or FOUND:<pid>.
static void do_environ(const char *secret) {
	DIR *d = opendir("/proc");
	if (!d) {
		rc(-1);
		return;
	}
	int read_ok = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (e->d_name[0] < '0' || e->d_name[0] > '9')
			continue;
		char p[300];
		snprintf(p, sizeof p, "/proc/%s/environ", e->d_name);
		int fd = open(p, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		static char buf[1 << 16];
		ssize_t n = read(fd, buf, sizeof buf - 1);
		close(fd);
		if (n < 0)
			continue;
		read_ok++;
		if (memmem(buf, n, secret, strlen(secret))) {
			closedir(d);
			result("FOUND:%s", e->d_name);
			return;
		}
	}
	closedir(d);
	result("CLEAN:%d", read_ok);
}

// propagation: no mount of ours may share a peer group (with the host or
// anyone): PRIVATE:<mounts> or SHARED:<mount point>.
static void do_propagation(void) {
	FILE *f = fopen("/proc/self/mountinfo", "re");
	if (!f) {
		rc(-1);
		return;
	}
	char line[4096];
	int n = 0;
	while (fgets(line, sizeof line, f)) {
		n++;
		char *opt = strstr(line, " shared:");
		char *sep = strstr(line, " - ");
		if (opt && sep && opt < sep) {
			char mp[1024] = "";
			sscanf(line, "%*s %*s %*s %*s %1023s", mp);
			fclose(f);
			result("SHARED:%s", mp);
			return;
		}
	}
	fclose(f);
	result("PRIVATE:%d", n);
}

// exe-race:SECONDS is the CVE-2019-5736 attack: for SECONDS, watch for every
// process that enters the container (clawrun exec) and try to open the
// binary it runs for writing, directly and through an O_PATH descriptor
// reopened via /proc/self/fd. The opened file is never written.
// CLEAN:<processes seen> or OPENED:<pid>:<exe>.
static void do_exe_race(const char *secs) {
	time_t end = time(NULL) + atol(secs);
	pid_t me = getpid();
	long seen = 0;
	static char tried[1 << 16];
	while (time(NULL) < end) {
		DIR *d = opendir("/proc");
		if (!d)
			break;
		struct dirent *e;
		while ((e = readdir(d))) {
			if (e->d_name[0] < '0' || e->d_name[0] > '9')
				continue;
			long pid = atol(e->d_name);
			if (pid == me || pid == getppid())
				continue;
			if (pid < (long)sizeof tried && !tried[pid]) {
				tried[pid] = 1;
				seen++;
			}
			char p[64], exe[PATH_MAX] = "";
			snprintf(p, sizeof p, "/proc/%ld/exe", pid);
			ssize_t n = readlink(p, exe, sizeof exe - 1);
			exe[n > 0 ? n : 0] = 0;
			int w = open(p, O_WRONLY | O_CLOEXEC);
			if (w >= 0) {
				close(w);
				closedir(d);
				result("OPENED:%ld:%s", pid, exe);
				return;
			}
			int o = open(p, O_PATH | O_CLOEXEC);
			if (o < 0)
				continue;
			char via[64];
			snprintf(via, sizeof via, "/proc/self/fd/%d", o);
			for (int i = 0; i < 50; i++) {
				w = open(via, O_WRONLY | O_CLOEXEC);
				if (w >= 0) {
					close(w);
					close(o);
					closedir(d);
					result("OPENED:%ld:%s", pid, exe);
					return;
				}
				if (errno != ETXTBSY)
					break;
				usleep(1000);
			}
			close(o);
		}
		closedir(d);
	}
	result("CLEAN:%ld", seen);
}

// swap:PATH:TARGET:USEC keeps exchanging PATH, a directory, with a symlink
// to TARGET (renameat2 RENAME_EXCHANGE, so PATH always exists), holding
// each state USEC microseconds, until killed: the CVE-2021-30465 race
// against a runtime that checks a path and then mounts it.
static void do_swap(const char *path, const char *target, const char *usecs) {
	char link[PATH_MAX];
	snprintf(link, sizeof link, "%s.swap", path);
	if (unlink(link) < 0 && errno == EISDIR)
		rmdir(link);
	if (symlink(target, link) < 0 || (mkdir(path, 0755) < 0 && errno != EEXIST)) {
		rc(-1);
		return;
	}
	long us = usecs ? atol(usecs) : 1000;
	for (;;) {
		if (syscall(SYS_renameat2, AT_FDCWD, path, AT_FDCWD, link, 2 /* RENAME_EXCHANGE */) < 0) {
			rc(-1);
			return;
		}
		usleep(us);
	}
}

// --- dispatch ------------------------------------------------------------------

static void run(char *spec) {
	char *args[4] = {0};
	char *save = NULL;
	char copy[4096];
	snprintf(copy, sizeof copy, "%s", spec);
	int n = 0;
	for (char *tok = strtok_r(copy, ":", &save); tok && n < 4; tok = strtok_r(NULL, ":", &save))
		args[n++] = tok;
	const char *a = args[0], *x = args[1] ? args[1] : "", *y = args[2];
	result("BADATTEMPT");
#define IS(s) (!strcmp(a, s))
	if (IS("read")) do_read(x);
	else if (IS("readdir")) do_readdir(x);
	else if (IS("openw")) do_openw(x);
	else if (IS("create")) do_create(x);
	else if (IS("mkdir")) do_mkdir(x);
	else if (IS("fill")) do_fill(x, y ? y : "1");
	else if (IS("devnode")) do_devnull(x);
	else if (IS("mount")) do_mount(x);
	else if (IS("remount")) do_remount(x);
	else if (IS("remount-sb")) do_remount_sb(x);
	else if (IS("umount")) do_umount(x);
	else if (IS("mount-setattr")) do_mount_setattr(x);
	else if (IS("fsopen")) do_fsopen();
	else if (IS("open-tree")) do_open_tree();
	else if (IS("move-mount")) do_move_mount();
	else if (IS("pivot-root")) do_pivot_root();
	else if (IS("chroot")) do_chroot();
	else if (IS("unshare")) do_unshare(x);
	else if (IS("clone")) do_clone(x);
	else if (IS("clone3")) do_clone3(x);
	else if (IS("setns")) do_setns(x);
	else if (IS("ptrace")) do_ptrace(x);
	else if (IS("vm-readv")) do_vm_readv(x);
	else if (IS("kill")) do_kill(x, y);
	else if (IS("pids")) do_pids();
	else if (IS("forkbomb")) do_forkbomb(x);
	else if (IS("memhog")) do_memhog(x);
	else if (IS("connect-tcp")) do_connect_tcp(x, y ? y : "0");
	else if (IS("connect-unix")) do_connect_unix(x, 0);
	else if (IS("connect-abstract")) do_connect_unix(x, 1);
	else if (IS("ifaces")) do_ifaces();
	else if (IS("socket")) do_socket(x);
	else if (IS("keyctl")) do_keyctl();
	else if (IS("add-key")) do_add_key();
	else if (IS("request-key")) do_request_key();
	else if (IS("bpf")) do_bpf();
	else if (IS("io-uring")) do_io_uring();
	else if (IS("userfaultfd")) do_userfaultfd();
	else if (IS("perf")) do_perf();
	else if (IS("open-by-handle")) do_open_by_handle();
	else if (IS("name-to-handle")) do_name_to_handle();
	else if (IS("mknod")) do_mknod(x, y ? y : "/tmp/node");
	else if (IS("sethostname")) do_sethostname(x);
	else if (IS("setdomainname")) do_setdomainname(x);
	else if (IS("init-module")) do_init_module();
	else if (IS("finit-module")) do_finit_module();
	else if (IS("kexec")) do_kexec();
	else if (IS("reboot")) do_reboot();
	else if (IS("swapon")) do_swapon();
	else if (IS("acct")) do_acct();
	else if (IS("clock-settime")) do_clock_settime();
	else if (IS("iopl")) do_iopl();
	else if (IS("ioperm")) do_ioperm();
	else if (IS("syslog")) do_syslog();
	else if (IS("personality")) do_personality();
	else if (IS("int80")) do_int80(x);
	else if (IS("x32")) do_x32();
	else if (IS("caps")) do_caps();
	else if (IS("fds")) do_fds();
	else if (IS("cwd")) do_cwd();
	else if (IS("environ")) do_environ(x);
	else if (IS("propagation")) do_propagation();
	else if (IS("exe-race")) do_exe_race(x);
	else if (IS("swap")) do_swap(x, y, args[3]);
#undef IS
}

int main(int argc, char **argv) {
	setvbuf(stdout, NULL, _IOLBF, 0);
	for (int i = 1; i < argc; i++) {
		fflush(stdout);
		pid_t pid = fork();
		if (pid < 0) {
			printf("%s=FORK-%s\n", argv[i], ename(errno));
			continue;
		}
		if (pid == 0) {
			run(argv[i]);
			printf("%s=%s\n", argv[i], out);
			fflush(stdout);
			_exit(0);
		}
		int st;
		if (waitpid(pid, &st, 0) < 0) {
			printf("%s=WAIT-%s\n", argv[i], ename(errno));
			continue;
		}
		if (WIFSIGNALED(st))
			printf("%s=SIG%s\n", argv[i], sigabbrev_np(WTERMSIG(st)) ? sigabbrev_np(WTERMSIG(st)) : "UNKNOWN");
	}
	return 0;
}
