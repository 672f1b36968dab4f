/* cleanup.h - scope-bound cleanup of local resources (crun/systemd style).
 *
 * Every local resource is declared with a cleanup attribute; ownership leaves the scope only
 * through take_ptr()/take_fd(), which make the hand-off explicit at the call site. */
#ifndef RUNCELL_CLEANUP_H
#define RUNCELL_CLEANUP_H

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define _cleanup_(f) __attribute__((cleanup(f)))

static inline void rc_freep(void *p)
{
    free(*(void **)p);
}

static inline void rc_closep(int *fd)
{
    if (*fd >= 0)
        close(*fd);
}

static inline void rc_fclosep(FILE **f)
{
    if (*f)
        fclose(*f);
}

#define _cleanup_free_   _cleanup_(rc_freep)
#define _cleanup_close_  _cleanup_(rc_closep)
#define _cleanup_fclose_ _cleanup_(rc_fclosep)

/* Hand ownership out of a cleanup-scoped variable. */
#define take_ptr(p)                                                                                \
    ({                                                                                             \
        __typeof__(p) _taken = (p);                                                                \
        (p) = NULL;                                                                                \
        _taken;                                                                                    \
    })

#define take_fd(fd)                                                                                \
    ({                                                                                             \
        int _taken = (fd);                                                                         \
        (fd) = -1;                                                                                 \
        _taken;                                                                                    \
    })

#endif
