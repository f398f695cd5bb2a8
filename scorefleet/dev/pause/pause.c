/* The pod sandbox's process: holds the pod's namespaces open and does nothing else.
 *
 * What a pause container must do, and nothing more: sleep; reap any child re-parented to it
 * (it is PID 1 of the pod when the PID namespace is shared); exit 0 on SIGTERM or SIGINT so
 * the runtime can stop the sandbox without waiting for a kill timeout. Built here with
 * `gcc -static` (no libc in its image) by scorefleet/dev/pause_image.py.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void on_stop(int sig) {
  (void)sig;
  _exit(0);
}

static void on_child(int sig) {
  (void)sig;
  /* Reap every exited child: zombies would otherwise pile up in a shared PID namespace. */
  while (waitpid(-1, NULL, WNOHANG) > 0) {
  }
}

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "-v") == 0) {
    puts("scorefleet-pause 1");
    return 0;
  }
  if (getpid() != 1) {
    /* Not fatal: the kubelet may run the sandbox without a PID namespace of its own. */
    fputs("pause: not running as PID 1\n", stderr);
  }
  struct sigaction stop = {.sa_handler = on_stop};
  struct sigaction child = {.sa_handler = on_child, .sa_flags = SA_NOCLDSTOP | SA_RESTART};
  if (sigaction(SIGINT, &stop, NULL) < 0 || sigaction(SIGTERM, &stop, NULL) < 0 ||
      sigaction(SIGCHLD, &child, NULL) < 0) {
    perror("pause: sigaction");
    return 1;
  }
  for (;;) {
    pause();
  }
  return 42; /* unreachable */
}
