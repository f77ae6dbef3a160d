"""Architectural MSRs a guest's CPU policy covers (Intel SDM vol. 4; Xen's
msr-index.h uses the same names without the ARCH_CAP_ spelling)."""

MSR_ARCH_CAPABILITIES = 0x10A
CPUID7_EDX_ARCH_CAPS = 1 << 29       # CPUID.(EAX=7,ECX=0):EDX[29]

# MSR_ARCH_CAPABILITIES bits: "not affected by ..." and feature bits.
ARCH_CAP_RDCL_NO = 1 << 0            # no Rogue Data Cache Load (Meltdown, L1TF)
ARCH_CAP_IBRS_ALL = 1 << 1           # enhanced IBRS
ARCH_CAP_SKIP_L1DFL_VMENTRY = 1 << 3
ARCH_CAP_SSB_NO = 1 << 4             # no Speculative Store Bypass
ARCH_CAP_MDS_NO = 1 << 5             # no Microarchitectural Data Sampling
ARCH_CAP_PSCHANGE_MC_NO = 1 << 6
ARCH_CAP_TAA_NO = 1 << 8             # no TSX Asynchronous Abort
ARCH_CAP_SBDR_SSDP_NO = 1 << 13      # MMIO stale data: not affected ...
ARCH_CAP_FBSDP_NO = 1 << 14
ARCH_CAP_PSDP_NO = 1 << 15
ARCH_CAP_BHI_NO = 1 << 20            # no Branch History Injection
ARCH_CAP_PBRSB_NO = 1 << 24          # no Post-Barrier RSB predictions
ARCH_CAP_GDS_NO = 1 << 26            # no Gather Data Sampling
ARCH_CAP_RFDS_NO = 1 << 27           # no Register File Data Sampling
ARCH_CAP_ITS_NO = 1 << 62            # no Indirect Target Selection (VMM-synthesised)
