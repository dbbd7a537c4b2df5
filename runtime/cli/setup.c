/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * setup.c - `faultline setup`: let a group of users open /dev/userfaultfd.
 *
 * Why: the shim needs a userfaultfd that intercepts kernel-mode accesses too
 * (read(2) into managed memory, a futex word in it). userfaultfd(2) gives
 * one to an unprivileged process only with vm.unprivileged_userfaultfd=1 (0
 * on Debian, and a switch for every user of the machine); otherwise only a
 * UFFD_USER_MODE_ONLY one, with which the shim manages nothing.
 * /dev/userfaultfd (Linux 6.1 and later) hands a full userfaultfd to whoever
 * may open it, and the runtime tries it first (runtime/core/uffd.c); devtmpfs
 * creates it root:root 0600. Letting one group open it is the narrow fix.
 *
 * What `setup` changes, and `setup --undo` reverts:
 *   - /dev/userfaultfd becomes root:GROUP 0660, now;
 *   - a udev rule (RULE_FILE) makes it so again at every boot; where there is
 *     no /etc/udev/rules.d (no udev: most containers) the change lasts until
 *     the next boot only, and we say so;
 *   - with --user NAME, NAME joins GROUP (default "faultline", created as a
 *     system group when missing), through usermod(8): processes started
 *     after that (a new login, a service restart) have the group.
 * --undo leaves groups and memberships alone (they may serve other ends).
 *
 * Every check (root, the names, the device) comes before the first change,
 * and a change that fails undoes the ones before it: a failed setup leaves
 * the system as it was. Exit status: 0; 2 for usage errors, a caller that is
 * not root, an unknown user or group and a missing device; 1 for a system
 * failure.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "faultline.h"
#include "cli.h"

#define UFFD_DEV	"/dev/userfaultfd"
#define RULES_DIR	"/etc/udev/rules.d"
#define RULE_FILE	RULES_DIR "/60-faultline-userfaultfd.rules"
#define DEFAULT_GROUP	"faultline"
#define GRANT_MODE	0660

struct account {
	char name[256];
	uid_t uid;
	gid_t gid;		/* a user's primary group; a group's id */
};

/* the device's owner, group and permission bits */
struct node {
	bool present;
	uid_t uid;
	gid_t gid;
	mode_t mode;
};

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
	va_list ap;

	printf("%s: ", prog);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
}

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void fail(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: setup: ", prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* digits only: a numeric id, as chown(1) takes them */
static bool numeric_id(const char *s, unsigned long *out)
{
	if (!*s || s[strspn(s, "0123456789")] || strlen(s) > 9)
		return false;
	*out = strtoul(s, NULL, 10);
	return true;
}

/* Return: 0; -ENOENT (no such user) */
static int lookup_user(const char *s, struct account *a)
{
	struct passwd *pw = getpwnam(s);
	unsigned long id;

	if (!pw && numeric_id(s, &id))
		pw = getpwuid((uid_t)id);
	if (!pw || strlen(pw->pw_name) >= sizeof(a->name))
		return -ENOENT;
	strcpy(a->name, pw->pw_name);
	a->uid = pw->pw_uid;
	a->gid = pw->pw_gid;
	return 0;
}

/* Return: 0; -ENOENT (no such group) */
static int lookup_group(const char *s, struct account *a)
{
	struct group *gr = getgrnam(s);
	unsigned long id;

	if (!gr && numeric_id(s, &id))
		gr = getgrgid((gid_t)id);
	if (!gr || strlen(gr->gr_name) >= sizeof(a->name))
		return -ENOENT;
	strcpy(a->name, gr->gr_name);
	a->uid = (uid_t)-1;
	a->gid = gr->gr_gid;
	return 0;
}

static bool user_in_group(const struct account *u, gid_t gid)
{
	struct group *gr;

	if (u->gid == gid)
		return true;
	gr = getgrgid(gid);
	for (char **m = gr ? gr->gr_mem : NULL; m && *m; m++)
		if (!strcmp(*m, u->name))
			return true;
	return false;
}

static const char *user_name(uid_t uid, char *buf, size_t len)
{
	struct passwd *pw = getpwuid(uid);

	if (pw)
		snprintf(buf, len, "%s", pw->pw_name);
	else
		snprintf(buf, len, "%u", (unsigned int)uid);
	return buf;
}

static const char *group_name(gid_t gid, char *buf, size_t len)
{
	struct group *gr = getgrgid(gid);

	if (gr)
		snprintf(buf, len, "%s", gr->gr_name);
	else
		snprintf(buf, len, "%u", (unsigned int)gid);
	return buf;
}

/*
 * Run an administration tool (groupadd, usermod, gpasswd, groupdel,
 * udevadm) from the usual directories: root's PATH need not hold sbin.
 * Return: its exit status; 127: not found; -1: not run or killed.
 */
static int run_tool(const char *const *argv, bool quiet)
{
	static const char *const dirs[] = { "/usr/sbin/", "/sbin/", "/usr/bin/", "/bin/" };
	pid_t pid;
	int st;

	fflush(stdout);
	fflush(stderr);
	pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		char path[256];
		int fd;

		if (quiet && (fd = open("/dev/null", O_WRONLY)) >= 0) {
			dup2(fd, STDOUT_FILENO);
			dup2(fd, STDERR_FILENO);
		}
		for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
			snprintf(path, sizeof(path), "%s%s", dirs[i], argv[0]);
			execv(path, (char *const *)argv);
		}
		_exit(127);
	}
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* ---- the device node ---- */

/* Return: 0 (n->present false if missing); -ENOTTY (not a character device); -errno */
static int node_get(struct node *n)
{
	struct stat sb;

	memset(n, 0, sizeof(*n));
	if (stat(UFFD_DEV, &sb) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISCHR(sb.st_mode))
		return -ENOTTY;
	n->present = true;
	n->uid = sb.st_uid;
	n->gid = sb.st_gid;
	n->mode = sb.st_mode & 07777;
	return 0;
}

static const char *node_text(const struct node *n, char *buf, size_t len)
{
	char u[64], g[64];

	snprintf(buf, len, "%s:%s %04o", user_name(n->uid, u, sizeof(u)),
		 group_name(n->gid, g, sizeof(g)), (unsigned int)n->mode);
	return buf;
}

/*
 * Give the node @to's owner and mode. Ordering: first the permissions both
 * states share, then the owner, then @to's permissions; a process opening
 * the device meanwhile never finds it open to an owner or group that
 * neither the old nor the new state lets in (chown first would open it to
 * the new group with the old mode's group bits; chmod first, to the old
 * group with the new ones).
 * Return: 0; -errno (the node may be left with the shared permissions).
 */
static int node_set(const struct node *from, const struct node *to)
{
	if (chmod(UFFD_DEV, from->mode & to->mode) < 0 ||
	    chown(UFFD_DEV, to->uid, to->gid) < 0 ||
	    chmod(UFFD_DEV, to->mode) < 0)
		return -errno;
	return 0;
}

/* ---- the udev rule ---- */

static bool is_dir(const char *path)
{
	struct stat sb;

	return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

/* Return: the rule file's length (0..len-1, NUL-terminated), or -errno (-ENOENT: none) */
static ssize_t rule_read(char *buf, size_t len)
{
	int fd = open(RULE_FILE, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -errno;
	n = read(fd, buf, len - 1);
	if (n < 0)
		n = -errno;
	close(fd);
	buf[n > 0 ? n : 0] = '\0';
	return n;
}

/* write @text as the rule file: a new file renamed over the old one. Return: 0; -errno */
static int rule_put(const char *text)
{
	static const char tmp[] = RULE_FILE ".new";
	size_t len = strlen(text);
	int fd, ret = 0;

	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	if (write(fd, text, len) != (ssize_t)len || fsync(fd) < 0)
		ret = errno ? -errno : -EIO;
	if (close(fd) < 0 && !ret)
		ret = -errno;
	if (!ret && rename(tmp, RULE_FILE) < 0)
		ret = -errno;
	if (ret)
		unlink(tmp);
	return ret;
}

/* the group the rule file names (GROUP="..."), or "" */
static void rule_group(const char *text, char *out, size_t len)
{
	const char *g = strstr(text, "GROUP=\"");
	size_t n;

	out[0] = '\0';
	if (!g)
		return;
	g += strlen("GROUP=\"");
	n = strcspn(g, "\"\n");
	if (n < len)
		snprintf(out, len, "%.*s", (int)n, g);
}

/* tell a running udev to read its rules again; best effort */
static void udev_reload(void)
{
	static const char *const argv[] = { "udevadm", "control", "--reload", NULL };

	if (!access("/run/udev/control", F_OK))
		(void)run_tool(argv, true);
}

/* ---- setup --user / --group ---- */

static int need_root(void)
{
	if (geteuid() == 0)
		return 0;
	fail("must be run as root (it changes " UFFD_DEV " and " RULES_DIR "); nothing changed");
	return 2;
}

static int no_device(int err)
{
	if (!err)
		fail("no " UFFD_DEV ": it needs Linux 6.1 or later built with "
		     "CONFIG_USERFAULTFD (a container needs the host's device passed in); "
		     "nothing changed");
	else
		fail(UFFD_DEV ": %s; nothing changed",
		     err == -ENOTTY ? "not a character device" : strerror(-err));
	return err ? 1 : 2;
}

static int setup_grant(const char *user_arg, const char *group_arg)
{
	const char *gname = group_arg ? group_arg : DEFAULT_GROUP;
	struct account u = { .name = "" }, g;
	struct node before, after;
	char old_rule[4096], rule[1024], a[160], b[160];
	bool make_group = false, added = false, rules = is_dir(RULES_DIR);
	ssize_t had_rule = -ENOENT;
	int ret;

	if ((ret = need_root()))
		return ret;
	if (user_arg && lookup_user(user_arg, &u)) {
		fail("unknown user '%s'; nothing changed", user_arg);
		return 2;
	}
	if (lookup_group(gname, &g)) {
		if (group_arg || !user_arg) {
			fail("unknown group '%s' (create it first, or give --user NAME "
			     "alone to use the group " DEFAULT_GROUP "); nothing changed", gname);
			return 2;
		}
		make_group = true;
	} else {
		gname = g.name;
	}
	if (gname[strcspn(gname, "\"\\\n")]) {
		fail("group name '%s' cannot go into a udev rule; nothing changed", gname);
		return 2;
	}
	ret = node_get(&before);
	if (ret || !before.present)
		return no_device(ret);
	if (rules) {
		/* kept to be put back if a later step fails */
		had_rule = rule_read(old_rule, sizeof(old_rule));
		if (had_rule < 0 && had_rule != -ENOENT) {
			fail("cannot read " RULE_FILE ": %s; nothing changed",
			     strerror((int)-had_rule));
			return 1;
		}
	}

	/* checks done: from here on, a failure undoes what came before it */
	if (make_group) {
		const char *const argv[] = { "groupadd", "--system", gname, NULL };

		if (run_tool(argv, false) != 0 || lookup_group(gname, &g)) {
			fail("cannot create the group %s (groupadd --system %s failed); "
			     "nothing changed", gname, gname);
			return 1;
		}
	}
	if (user_arg && !user_in_group(&u, g.gid)) {
		const char *const argv[] = { "usermod", "-a", "-G", gname, u.name, NULL };

		if (run_tool(argv, false) != 0) {
			fail("cannot add %s to the group %s (usermod -a -G %s %s failed)",
			     u.name, gname, gname, u.name);
			goto undo_group;
		}
		added = true;
	}
	if (rules) {
		snprintf(rule, sizeof(rule),
			 "# Written by `faultline setup`: members of the group %s may open\n"
			 "# " UFFD_DEV " (a userfaultfd that handles kernel-mode faults too).\n"
			 "# `faultline setup --undo` removes this file.\n"
			 "KERNEL==\"userfaultfd\", OWNER=\"root\", GROUP=\"%s\", MODE=\"%04o\"\n",
			 gname, gname, GRANT_MODE);
		ret = rule_put(rule);
		if (ret) {
			fail("cannot write " RULE_FILE ": %s", strerror(-ret));
			goto undo_member;
		}
	}
	after = (struct node){ .present = true, .uid = 0, .gid = g.gid, .mode = GRANT_MODE };
	ret = node_set(&before, &after);
	if (ret) {
		fail("cannot change " UFFD_DEV ": %s", strerror(-ret));
		(void)node_set(&before, &before);
		goto undo_rule;
	}
	udev_reload();

	say(UFFD_DEV ": %s -> %s", node_text(&before, a, sizeof(a)), node_text(&after, b, sizeof(b)));
	if (make_group)
		say("created the system group %s", gname);
	if (added)
		say("added %s to the group %s: processes started from now on (a new login, "
		    "a service restart) can open " UFFD_DEV, u.name, gname);
	else if (user_arg)
		say("%s is already in the group %s", u.name, gname);
	if (rules)
		say("wrote " RULE_FILE ": the same at every boot");
	else
		say("no " RULES_DIR " (no udev here): the change lasts until the next boot");
	return 0;

undo_rule:
	if (rules && had_rule >= 0)
		(void)rule_put(old_rule);
	else if (rules)
		unlink(RULE_FILE);
undo_member:
	if (added) {
		const char *const argv[] = { "gpasswd", "-d", u.name, gname, NULL };

		(void)run_tool(argv, true);
	}
undo_group:
	if (make_group) {
		const char *const argv[] = { "groupdel", gname, NULL };

		(void)run_tool(argv, true);
	}
	fail("nothing changed");
	return 1;
}

/* ---- setup --undo ---- */

static int setup_undo(void)
{
	struct node before, after = { .present = true, .uid = 0, .gid = 0, .mode = 0600 };
	char old_rule[4096], a[160], b[160];
	ssize_t had_rule;
	int ret;

	if ((ret = need_root()))
		return ret;
	ret = node_get(&before);
	if (ret)
		return no_device(ret);
	had_rule = rule_read(old_rule, sizeof(old_rule));
	if (had_rule < 0 && had_rule != -ENOENT) {
		fail("cannot read " RULE_FILE ": %s; nothing changed", strerror((int)-had_rule));
		return 1;
	}
	if (before.present) {
		ret = node_set(&before, &after);
		if (ret) {
			fail("cannot change " UFFD_DEV ": %s; nothing changed", strerror(-ret));
			(void)node_set(&before, &before);
			return 1;
		}
	}
	if (had_rule >= 0 && unlink(RULE_FILE) < 0 && errno != ENOENT) {
		fail("cannot remove " RULE_FILE ": %s; nothing changed", strerror(errno));
		if (before.present)
			(void)node_set(&before, &before);
		return 1;
	}
	udev_reload();
	if (before.present)
		say(UFFD_DEV ": %s -> %s", node_text(&before, a, sizeof(a)),
		    node_text(&after, b, sizeof(b)));
	else
		say("no " UFFD_DEV " here: nothing to restore");
	say(had_rule >= 0 ? "removed " RULE_FILE : "no " RULE_FILE " to remove");
	if (before.present && before.gid != 0)
		say("the group %s and its members are left as they are",
		    group_name(before.gid, a, sizeof(a)));
	return 0;
}

/* ---- setup --check ---- */

/*
 * What the runtime gets for @u: a child takes on @u's identity (when it is
 * not ours already) and starts a runtime, the way the shim does.
 * Return: an exit code of the child: 2 + 2 * open_method + kernel_faults
 * (2..9), 100 + errno when no runtime started, 99 when the identity could
 * not be taken, -1 if the child did not run.
 */
enum { PROBE_NOID = 99, PROBE_ERRNO = 100 };

static int probe_as(const struct account *u, bool become)
{
	pid_t pid;
	int st;

	fflush(stdout);
	fflush(stderr);
	pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		struct fl_runtime_opts o;
		struct fl_features ft = { .size = sizeof(ft) };
		struct fl_runtime *rt;
		int ret;

		if (become && (initgroups(u->name, u->gid) < 0 || setgid(u->gid) < 0 ||
			       setuid(u->uid) < 0))
			_exit(PROBE_NOID);
		fl_runtime_opts_init(&o);
		o.handlers = 1;
		o.flags |= FL_RT_NO_PIN;
		ret = fl_runtime_create(&o, &rt);
		if (ret)
			_exit(PROBE_ERRNO + (-ret < 150 ? -ret : 0));
		if (fl_features(rt, &ft))
			_exit(PROBE_ERRNO);
		_exit(2 + 2 * (int)ft.open_method + (ft.kernel_faults ? 1 : 0));
	}
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int setup_check(const char *user_arg)
{
	struct account u;
	struct node n;
	char text[4096], grp[128], a[160];
	bool become;
	int fd, ret, r;

	if (user_arg) {
		if (lookup_user(user_arg, &u)) {
			fail("unknown user '%s'", user_arg);
			return 2;
		}
	} else {
		struct passwd *pw = getpwuid(getuid());

		snprintf(u.name, sizeof(u.name), "%s", pw ? pw->pw_name : "?");
		u.uid = getuid();
		u.gid = getgid();
	}
	become = u.uid != geteuid();
	if (become && geteuid() != 0) {
		fail("--check --user %s needs root (or run it as %s)", user_arg, u.name);
		return 2;
	}

	ret = node_get(&n);
	if (ret)
		printf(UFFD_DEV ": %s\n", ret == -ENOTTY ? "not a character device" : strerror(-ret));
	else if (!n.present)
		printf(UFFD_DEV ": missing (Linux 6.1 or later creates it)\n");
	else
		printf(UFFD_DEV ": %s\n", node_text(&n, a, sizeof(a)));
	if (!is_dir(RULES_DIR)) {
		printf("udev rule: none (no " RULES_DIR ")\n");
	} else if (rule_read(text, sizeof(text)) < 0) {
		printf("udev rule: none\n");
	} else {
		rule_group(text, grp, sizeof(grp));
		printf("udev rule: " RULE_FILE " (group %s)\n", *grp ? grp : "?");
	}
	fd = open("/proc/sys/vm/unprivileged_userfaultfd", O_RDONLY | O_CLOEXEC);
	r = fd >= 0 ? (int)read(fd, a, sizeof(a) - 1) : -1;
	if (fd >= 0)
		close(fd);
	a[r > 0 ? r - 1 : 0] = '\0';
	printf("vm.unprivileged_userfaultfd: %s\n", r > 0 ? a : "?");

	printf("user %s (uid %u): ", u.name, (unsigned int)u.uid);
	ret = probe_as(&u, become);
	switch (ret) {
	case 2 + 2 * FL_OPEN_DEV + 1:
		printf("full userfaultfd through " UFFD_DEV ": the shim manages its memory\n");
		return 0;
	case 2 + 2 * FL_OPEN_SYSCALL + 1:
		printf("full userfaultfd through userfaultfd(2): the shim manages its memory\n");
		return 0;
	case PROBE_NOID:
		printf("?\n");
		fail("cannot take on the identity of %s", u.name);
		return 1;
	case -1:
		printf("?\n");
		fail("cannot start a probe process: %s", strerror(errno));
		return 1;
	default:
		if (ret > PROBE_ERRNO)
			printf("no userfaultfd (%s)", strerror(ret - PROBE_ERRNO));
		else if (ret == 2 + 2 * FL_OPEN_SYSCALL_USER_ONLY)
			printf("a user-mode-only userfaultfd");
		else
			printf("no usable userfaultfd");
		printf(": the shim manages nothing");
		if (ret != PROBE_ERRNO + ENOSYS)
			printf("; to fix, as root: %s setup --user %s", prog, u.name);
		putchar('\n');
		return 1;
	}
}

/* ---- the command ---- */

int cmd_setup(int argc, char **argv)
{
	enum { O_UNDO = 256, O_CHECK };
	static const struct option lopts[] = {
		{ "user", required_argument, NULL, 'u' },
		{ "group", required_argument, NULL, 'g' },
		{ "undo", no_argument, NULL, O_UNDO },
		{ "check", no_argument, NULL, O_CHECK },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *user = NULL, *group = NULL;
	bool undo = false, check = false;
	int c;

	optind = 1;
	while ((c = getopt_long(argc, argv, "+u:g:h", lopts, NULL)) != -1) {
		switch (c) {
		case 'u':
			if (!*optarg)
				usage_error("setup: invalid --user '': expected a user name");
			user = optarg;
			break;
		case 'g':
			if (!*optarg)
				usage_error("setup: invalid --group '': expected a group name");
			group = optarg;
			break;
		case O_UNDO:
			undo = true;
			break;
		case O_CHECK:
			check = true;
			break;
		case 'h':
			printf("Usage: %s setup --user NAME [--group GROUP] | --group GROUP\n"
			       "       %s setup --undo\n"
			       "       %s setup --check [--user NAME]\n"
			       "Let a user or a group open " UFFD_DEV ", now and at every boot\n"
			       "(a udev rule), so that programs they run get full userfaultfd\n"
			       "(kernel-mode faults too) under the shim. See faultline(1).\n",
			       prog, prog, prog);
			return 0;
		default:
			fprintf(stderr, "Try '%s --help' for more information.\n", prog);
			return 2;
		}
	}
	if (optind < argc)
		usage_error("setup: unexpected argument '%s'", argv[optind]);
	if (undo && check)
		usage_error("setup: --undo and --check do not go together");
	if (check) {
		if (group)
			usage_error("setup: --check takes --user, not --group");
		return setup_check(user);
	}
	if (undo) {
		if (user || group)
			usage_error("setup: --undo takes no --user or --group");
		return setup_undo();
	}
	if (!user && !group)
		usage_error("setup: expected --user NAME, --group GROUP, --undo or --check");
	return setup_grant(user, group);
}
