/* executor_main.c - runcell-tool-executor: the tool executor as its own small program.
 *
 * The runner runs its file tools in a child process (runner/executor.c). It prefers this
 * program, installed next to runcell-runner, over re-executing itself: linked against libc and
 * cJSON only, it does not load libcurl's tree of some thirty shared libraries, which would cost
 * the executor about 6 MiB of RSS for nothing. Without it the runner execs itself with
 * --tool-executor, which behaves the same.
 *
 * The Makefile builds it as its own program (MAIN_runcell-tool-executor), linked with
 * --as-needed, so it stays out of the library archive every binary and test links. */
#include "executor.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc != 2 || strcmp(argv[1], RC_EXECUTOR_ARG) != 0) {
        fprintf(stderr,
                "runcell-tool-executor: started by runcell-runner only (%s, socket on "
                "stdin)\n",
                RC_EXECUTOR_ARG);
        return 2;
    }
    return rc_executor_main(STDIN_FILENO);
}
