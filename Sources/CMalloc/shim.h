// glibc's allocator controls (mallopt, malloc_trim, M_ARENA_MAX), which Swift's Glibc module leaves out.
#include <malloc.h>
