/* The test guests' small library: PVH boot, Xen, console, time, cmdline. */
#ifndef GUEST_GUEST_H
#define GUEST_GUEST_H

#include <stdarg.h>
#include <xen/xen.h>
#include <xen/errno.h>
#include <xen/sched.h>
#include <xen/version.h>
#include <xen/arch-x86/hvm/start_info.h>
#include "hypercall.h"

#define PAGE_SIZE 4096UL

/* Each guest defines this; the library calls it after setup. Returning 0
 * powers off, anything else crashes the domain. */
int guest_main(void);

extern const struct hvm_start_info *start_info;
extern struct shared_info *shared_info;   /* NULL until time_init() */
extern uint32_t xen_cpuid_base;

/* console */
void console_write(const char *s, unsigned long len);
int vsnprintf(char *buf, unsigned long size, const char *fmt, va_list ap);
int snprintf(char *buf, unsigned long size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void printk(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* shutdown */
void __attribute__((noreturn)) shutdown(unsigned int reason);
void __attribute__((noreturn)) panic(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));

/* time: pvclock over shared info (mapped by time_init). */
int time_init(void);                  /* 0 or a negative Xen errno */
uint64_t now_ns(void);
long sleep_until(uint64_t deadline_ns); /* SCHEDOP_poll, no ports */
long sleep_ns(uint64_t ns);

/* hvm_start_info */
const char *cmdline(void);
/* Copies the value of `key=value` into buf; returns 1 if found. */
int cmdline_get(const char *key, char *buf, unsigned long size);
uint64_t cmdline_u64(const char *key, uint64_t dflt);
uint64_t ram_end(void);               /* end of the highest RAM range */

/* strings */
void *memset(void *s, int c, unsigned long n);
void *memcpy(void *d, const void *s, unsigned long n);
int memcmp(const void *a, const void *b, unsigned long n);
unsigned long strlen(const char *s);
int strcmp(const char *a, const char *b);
int strncmp(const char *a, const char *b, unsigned long n);

/* traps */
void traps_init(void);

static inline void cpuid(uint32_t leaf, uint32_t *a, uint32_t *b, uint32_t *c,
                         uint32_t *d)
{
    asm volatile("cpuid" : "=a"(*a), "=b"(*b), "=c"(*c), "=d"(*d)
                 : "a"(leaf), "c"(0));
}

static inline void wrmsr(uint32_t msr, uint64_t val)
{
    asm volatile("wrmsr" :: "c"(msr), "a"((uint32_t)val),
                 "d"((uint32_t)(val >> 32)) : "memory");
}

static inline uint64_t rdtsc(void)
{
    uint32_t lo, hi;
    asm volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return ((uint64_t)hi << 32) | lo;
}

#define barrier() asm volatile("" ::: "memory")
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

#endif
