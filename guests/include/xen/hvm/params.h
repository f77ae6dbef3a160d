/* HVM parameter indexes. */
#ifndef GUEST_XEN_HVM_PARAMS_H
#define GUEST_XEN_HVM_PARAMS_H

#define HVM_PARAM_CALLBACK_IRQ   0
#define HVM_PARAM_STORE_PFN      1
#define HVM_PARAM_STORE_EVTCHN   2
#define HVM_PARAM_CONSOLE_PFN   17
#define HVM_PARAM_CONSOLE_EVTCHN 18
#define HVM_NR_PARAMS           39

/* CALLBACK_IRQ value: delivery type in bits 63:56; type 2 = vector in bits 7:0. */
#define HVM_PARAM_CALLBACK_TYPE_VECTOR 2

#endif
