/*
 * LD_PRELOAD shim that lets Debian's real `xl -N create` (Xen 4.17) run on a
 * machine without Xen, so tests can compare its JSON with ours.
 *
 * A dry run only parses the config and prints libxl's JSON, but xl first
 * opens a libxl context and asks for version and physical info.  These
 * replacements answer those few calls with a fixed, plausible host
 * (PV+HVM capable, SHIM_NR_CPUS CPUs, one NUMA node); nothing else of
 * libxenctrl or xenstore is touched on the dry-run path.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define SHIM_NR_CPUS 64

void *xc_interface_open(void *logger, void *dombuild_logger, unsigned flags)
{
    return calloc(1, 65536);
}
int xc_interface_close(void *xch) { return 0; }
void *xs_open(unsigned long flags) { return calloc(1, 65536); }
void *xs_daemon_open(void) { return calloc(1, 65536); }
void xs_close(void *h) {}

int libxl_get_max_cpus(void *ctx) { return SHIM_NR_CPUS; }
int libxl_get_max_nodes(void *ctx) { return 1; }
int libxl_get_online_cpus(void *ctx) { return SHIM_NR_CPUS; }

/* XENVER_* sub-ops: 0 version, 1 extraversion, 2 compile_info,
 * 3 capabilities, 4 changeset, 5 platform_parameters, 6 get_features,
 * 7 pagesize, 9 commandline. */
int xc_version(void *xch, int cmd, void *arg)
{
    switch (cmd) {
    case 0: return (4 << 16) | 17;
    case 7: return 4096;
    case 1: case 3: case 4: case 9:
        if (arg) *(char *)arg = 0;
        return 0;
    case 2: if (arg) memset(arg, 0, 256); return 0;
    case 5: case 6: if (arg) memset(arg, 0, 8); return 0;
    default: return 0;
    }
}

/* struct xen_sysctl_physinfo (public/sysctl.h, interface version 0x15). */
struct physinfo {
    uint32_t threads_per_core, cores_per_socket, nr_cpus, max_cpu_id;
    uint32_t nr_nodes, max_node_id, cpu_khz, capabilities;
    uint32_t arch_capabilities, pad;
    uint64_t total_pages, free_pages, scrub_pages, outstanding_pages, max_mfn;
    uint32_t hw_cap[8];
};

int xc_physinfo(void *xch, struct physinfo *p)
{
    memset(p, 0, sizeof(*p));
    p->threads_per_core = 1;
    p->cores_per_socket = SHIM_NR_CPUS;
    p->nr_cpus = SHIM_NR_CPUS;
    p->max_cpu_id = SHIM_NR_CPUS - 1;
    p->nr_nodes = 1;
    p->cpu_khz = 2000000;
    /* XEN_SYSCTL_PHYSCAP_{hvm,pv,hap,shadow,gnttab_v1,gnttab_v2} */
    p->capabilities = 0x1 | 0x2 | 0x8 | 0x10 | 0x100 | 0x200;
    p->total_pages = 1 << 20;
    p->free_pages = 1 << 19;
    p->max_mfn = 1 << 20;
    return 0;
}

long xc_memory_op(void *xch, unsigned cmd, void *arg, size_t len) { return 0; }
long xc_sharing_freed_pages(void *xch) { return 0; }
long xc_sharing_used_frames(void *xch) { return 0; }
