"""vcpu_op sub-ops and argument structs (public vcpu.h)."""
import struct

VCPUOP_initialise = 0
VCPUOP_up = 1
VCPUOP_down = 2
VCPUOP_is_up = 3
VCPUOP_get_runstate_info = 4
VCPUOP_register_runstate_memory_area = 5
VCPUOP_set_periodic_timer = 6
VCPUOP_stop_periodic_timer = 7
VCPUOP_set_singleshot_timer = 8
VCPUOP_stop_singleshot_timer = 9
VCPUOP_register_vcpu_info = 10
VCPUOP_send_nmi = 11
VCPUOP_get_physid = 12
VCPUOP_register_vcpu_time_memory_area = 13

RUNSTATE_running = 0
RUNSTATE_runnable = 1
RUNSTATE_blocked = 2
RUNSTATE_offline = 3

# struct vcpu_runstate_info { int state; uint64_t state_entry_time; uint64_t time[4]; }
RUNSTATE_INFO = struct.Struct("<i4xQ4Q")
# struct vcpu_register_runstate_memory_area { union { handle h; uint64_t p; } addr; }
REGISTER_RUNSTATE_MEMORY_AREA = struct.Struct("<Q")
# struct vcpu_set_singleshot_timer { uint64_t timeout_abs_ns; uint32_t flags; }
SET_SINGLESHOT_TIMER = struct.Struct("<QI4x")
VCPU_SSHOTTMR_future = 1 << 0
# struct vcpu_register_vcpu_info { uint64_t mfn; uint32_t offset; uint32_t rsvd; }
REGISTER_VCPU_INFO = struct.Struct("<QII")

# VCPUOP_initialise for HVM/PVH guests takes a vcpu_hvm_context (hvm_vcpu.h):
# { uint32_t mode; uint32_t pad; union { x86_32, x86_64 } cpu_regs; }.
VCPU_HVM_MODE_32B = 0
VCPU_HVM_MODE_64B = 1
VCPU_HVM_CONTEXT_HDR = struct.Struct("<II")
# vcpu_hvm_x86_32: eax ecx edx ebx esp ebp esi edi eip eflags cr0 cr3 cr4 pad1
#   efer (u64), then cs/ds/ss/es/tr base, limit, ar (u32 each).
VCPU_HVM_X86_32 = struct.Struct("<14IQ")
# vcpu_hvm_x86_64: rax rcx rdx rbx rsp rbp rsi rdi rip rflags cr0 cr3 cr4 efer (u64).
VCPU_HVM_X86_64 = struct.Struct("<14Q")
VCPU_HVM_CONTEXT_SIZE = 128   # header + the union (x86_32 is the larger, 120 bytes)
