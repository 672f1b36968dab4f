/* fsio.h - two file-system helpers several modules had written for themselves: writing a whole
 * buffer to a descriptor, and opening the directory of a path inside an untrusted tree without
 * ever following a symlink (the archive extractors for skills and zips). */
#ifndef RUNCELL_FSIO_H
#define RUNCELL_FSIO_H

#include "err.h"

#include <stddef.h>
#include <sys/types.h>

/* Write all n bytes (EINTR retried). On failure: -RC_EIO with "write" or "write <what>". */
int rc_fd_write_all(int fd, const void *p, size_t n, const char *what, rc_error *err);

/* The directory that holds path's last component, below root_fd, each missing directory made
 * with mode and every component opened O_NOFOLLOW|O_DIRECTORY (a symlink anywhere fails).
 * path is '/'-separated and relative; it is modified while walking and restored. Returns the
 * directory's fd (the caller closes it) with *ret_leaf pointing at the last component inside
 * path, or -RC_EIO. */
int rc_fs_open_parent(int root_fd, char *path, mode_t mode, const char **ret_leaf, rc_error *err);

#endif
