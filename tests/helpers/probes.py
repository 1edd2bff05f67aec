"""A static C probe for what a container may do, built with gcc -static.

`syscall-probe NAME...` makes each named call with the raw syscall(2) (so
libc fallbacks hide nothing) and prints `NAME=ok` or `NAME=<errno number>`,
one a line. `syscall-probe status` prints the Seccomp: line of
/proc/self/status.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

PROBE_SOURCE = r"""
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/ip_icmp.h>
#include <sys/socket.h>
#include <linux/if_ether.h>

#ifndef SYS_io_uring_setup
#define SYS_io_uring_setup 425
#endif
#ifndef SYS_clone3
#define SYS_clone3 435
#endif

/* an ICMP echo to 127.0.0.1 on an unprivileged ICMP socket, and its reply */
static long icmp_echo(void) {
    int s = socket(AF_INET, SOCK_DGRAM, IPPROTO_ICMP);
    if (s < 0) return -1;
    struct icmphdr request = {.type = ICMP_ECHO};
    request.un.echo.sequence = htons(1);
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct timeval timeout = {.tv_sec = 2};
    setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    if (sendto(s, &request, sizeof request, 0, (struct sockaddr *)&to, sizeof to) < 0) return -1;
    struct icmphdr reply;
    if (recv(s, &reply, sizeof reply, 0) < 0) return -1;
    close(s);
    if (reply.type != ICMP_ECHOREPLY) { errno = EPROTO; return -1; }
    return 0;
}

static long probe(const char *name) {
    if (!strcmp(name, "icmp_echo")) return icmp_echo();
    if (!strcmp(name, "packet_socket")) return socket(AF_PACKET, SOCK_RAW, htons(ETH_P_ALL));
    static char params[256];
    if (!strcmp(name, "getpid")) return syscall(SYS_getpid);
    if (!strcmp(name, "io_uring_setup")) return syscall(SYS_io_uring_setup, 1, params);
    if (!strcmp(name, "add_key"))
        return syscall(SYS_add_key, "user", "supd-probe", "x", 1, -2 /* process keyring */);
    if (!strcmp(name, "keyctl")) return syscall(SYS_keyctl, 0 /* GET_KEYRING_ID */, -2, 1);
    if (!strcmp(name, "personality_query")) return syscall(SYS_personality, 0xffffffffUL);
    if (!strcmp(name, "personality_linux")) return syscall(SYS_personality, 0UL);
    if (!strcmp(name, "personality_addr_no_randomize")) return syscall(SYS_personality, 0x0040000UL);
    if (!strcmp(name, "unshare_user")) return syscall(SYS_unshare, CLONE_NEWUSER);
    if (!strcmp(name, "unshare_ns")) return syscall(SYS_unshare, CLONE_NEWNS);
    if (!strcmp(name, "clone3")) return syscall(SYS_clone3, NULL, 0);
    if (!strcmp(name, "clone_newuser") || !strcmp(name, "clone_plain")) {
        unsigned long flags = SIGCHLD | (name[6] == 'n' ? CLONE_NEWUSER : 0);
        long pid = syscall(SYS_clone, flags, 0, 0, 0, 0);
        if (pid == 0) _exit(0);
        if (pid > 0) waitpid(pid, NULL, 0);
        return pid < 0 ? -1 : 0;
    }
    if (!strcmp(name, "past_the_profile")) return syscall(1000);
    errno = EINVAL;
    fprintf(stderr, "unknown probe %s\n", name);
    return -2;
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "status")) {
            char line[256];
            FILE *f = fopen("/proc/self/status", "r");
            while (f && fgets(line, sizeof line, f))
                if (!strncmp(line, "Seccomp:", 8)) fputs(line, stdout);
            continue;
        }
        errno = 0;
        long r = probe(argv[i]);
        if (r < 0) printf("%s=%d\n", argv[i], errno);
        else printf("%s=ok\n", argv[i]);
    }
    return 0;
}
"""


def build_probe(directory: Path) -> Path:
    """directory/syscall-probe, a static binary that runs in any rootfs."""
    gcc = shutil.which("gcc")
    if gcc is None:
        raise FileNotFoundError("gcc missing: apt-get install gcc")
    directory.mkdir(parents=True, exist_ok=True)
    source = directory / "syscall-probe.c"
    source.write_text(PROBE_SOURCE)
    binary = directory / "syscall-probe"
    subprocess.run([gcc, "-static", "-O1", "-o", str(binary), str(source)], check=True, capture_output=True)
    return binary


def parse(output: str) -> dict[str, str]:
    """`NAME=ok` / `NAME=1` lines (and `Seccomp: N`) -> {name: "ok" | "1" | ...}."""
    results = {}
    for line in output.splitlines():
        if line.startswith("Seccomp:"):
            results["Seccomp"] = line.split(":", 1)[1].strip()
        elif "=" in line:
            name, _, value = line.partition("=")
            results[name] = value
    return results
