/* net-test: the guest side of a vif. Answers ARP for its address and ICMP
 * echo requests; with peer=, resolves the peer by ARP and pings it `count`
 * times, printing each round trip, then "net-test: PASS" (poweroff) or
 * "net-test: FAIL ..." (crash). Without peer= it serves for `serve`
 * seconds (default 600).
 *   ip=A.B.C.D  peer=A.B.C.D  count=N (10)  serve=S
 * blast=N [size=S]: after the pings, send N frames of S bytes (ethertype
 * 0x88b5) to the peer, then end markers; a serving net-test counts them and
 * prints "net-test: received N frames, B bytes in T us". */
#include "lib/guest.h"
#include "lib/evtchn.h"
#include "lib/xenbus.h"
#include "lib/netfront.h"

#define FAIL(...) do { pvcons_printf("net-test: FAIL " __VA_ARGS__); return 1; } while (0)

static struct netfront nf;
static uint8_t my_ip[4], peer_ip[4], peer_mac[6];
static int have_peer_mac;
static uint8_t frame[2048], out[2048];
static uint64_t blast_frames, blast_bytes, blast_first, blast_last;

#define ETH_P_BLAST 0x88b5

static int parse_ip(const char *key, uint8_t ip[4])
{
    char buf[32];
    unsigned int part = 0, v = 0;

    if (!cmdline_get(key, buf, sizeof(buf)))
        return 0;
    for (char *c = buf;; c++) {
        if (*c >= '0' && *c <= '9') {
            v = v * 10 + (*c - '0');
        } else {
            if (part > 3 || v > 255)
                return 0;
            ip[part++] = v;
            v = 0;
            if (*c != '.')
                break;
        }
    }
    return part == 4;
}

static uint16_t csum(const uint8_t *p, unsigned int n)
{
    uint32_t s = 0;
    for (unsigned int i = 0; i + 1 < n; i += 2)
        s += p[i] << 8 | p[i + 1];
    if (n & 1)
        s += p[n - 1] << 8;
    while (s >> 16)
        s = (s & 0xffff) + (s >> 16);
    return ~s;
}

static void put16(uint8_t *p, uint16_t v) { p[0] = v >> 8; p[1] = v; }
static uint16_t get16(const uint8_t *p) { return p[0] << 8 | p[1]; }

static void send_arp(int op, const uint8_t *tmac, const uint8_t *tip)
{
    static const uint8_t bcast[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    memset(out, 0, 60);
    memcpy(out, op == 1 ? bcast : tmac, 6);
    memcpy(out + 6, nf.mac, 6);
    put16(out + 12, 0x0806);
    put16(out + 14, 1);
    put16(out + 16, 0x0800);
    out[18] = 6;
    out[19] = 4;
    put16(out + 20, op);
    memcpy(out + 22, nf.mac, 6);
    memcpy(out + 28, my_ip, 4);
    if (op == 2)
        memcpy(out + 32, tmac, 6);
    memcpy(out + 38, tip, 4);
    netfront_send(&nf, out, 60);
}

static void send_icmp(const uint8_t *dmac, const uint8_t *dip, int type, uint16_t id,
                      uint16_t seq, const uint8_t *data, unsigned int dlen)
{
    uint8_t *ip = out + 14, *icmp = out + 34;
    unsigned int len = 34 + 8 + dlen;

    memcpy(out, dmac, 6);
    memcpy(out + 6, nf.mac, 6);
    put16(out + 12, 0x0800);
    memset(ip, 0, 20);
    ip[0] = 0x45;
    put16(ip + 2, 20 + 8 + dlen);
    ip[8] = 64;
    ip[9] = 1;
    memcpy(ip + 12, my_ip, 4);
    memcpy(ip + 16, dip, 4);
    put16(ip + 10, csum(ip, 20));
    icmp[0] = type;
    icmp[1] = 0;
    put16(icmp + 2, 0);
    put16(icmp + 4, id);
    put16(icmp + 6, seq);
    memcpy(icmp + 8, data, dlen);
    put16(icmp + 2, csum(icmp, 8 + dlen));
    netfront_send(&nf, out, len < 60 ? 60 : len);
}

/* Answer what must be answered; returns the ICMP echo-reply seq seen (or -1). */
static long handle(unsigned int len)
{
    if (len > 14 && get16(frame + 12) == ETH_P_BLAST) {
        if (frame[14] != 0xff) {
            blast_last = now_ns();
            if (!blast_frames++)
                blast_first = blast_last;
            blast_bytes += len;
        } else if (blast_frames) {
            pvcons_printf("net-test: received %lu frames, %lu bytes in %lu us "
                          "(%lu kicks, %lu waits %lu us)\n",
                          (unsigned long)blast_frames, (unsigned long)blast_bytes,
                          (unsigned long)((blast_last - blast_first) / 1000), nf.kicks, nf.waits,
                          nf.wait_ns / 1000);
            blast_frames = blast_bytes = 0;
        }
        return -1;
    }
    if (len >= 42 && get16(frame + 12) == 0x0806 && !memcmp(frame + 38, my_ip, 4)) {
        if (get16(frame + 20) == 1)
            send_arp(2, frame + 22, frame + 28);
        else if (get16(frame + 20) == 2 && !memcmp(frame + 28, peer_ip, 4)) {
            memcpy(peer_mac, frame + 22, 6);
            have_peer_mac = 1;
        }
        return -1;
    }
    if (len >= 42 && get16(frame + 12) == 0x0800 && frame[23] == 1 &&
        !memcmp(frame + 30, my_ip, 4)) {
        unsigned int ihl = (frame[14] & 0xf) * 4, tot = get16(frame + 16);
        uint8_t *icmp = frame + 14 + ihl;
        if (tot > len - 14 || tot < ihl + 8 || csum(frame + 14, ihl))
            return -1;
        if (icmp[0] == 8)
            send_icmp(frame + 6, frame + 26, 0, get16(icmp + 4), get16(icmp + 6), icmp + 8,
                      tot - ihl - 8);
        else if (icmp[0] == 0 && !csum(icmp, tot - ihl))
            return get16(icmp + 6);
    }
    return -1;
}

int guest_main(void)
{
    uint64_t count = cmdline_u64("count", 10), serve = cmdline_u64("serve", 600);
    int pinging;
    long rc;

    if ((rc = time_init()) || (rc = evtchn_init()) || (rc = gnttab_init()))
        panic("net-test: set-up: %ld\n", rc);
    if ((rc = pvcons_init()))
        panic("net-test: no PV console: %ld\n", rc);
    if ((rc = xs_init()))
        FAIL("no xenstore: %ld\n", rc);
    if (!parse_ip("ip", my_ip))
        FAIL("no ip=A.B.C.D on the command line\n");
    pinging = parse_ip("peer", peer_ip);
    if ((rc = netfront_init(&nf, 0)))
        FAIL("connect: %ld\n", rc);
    pvcons_printf("net-test: eth0 %02x:%02x:%02x:%02x:%02x:%02x ip %u.%u.%u.%u up\n",
                  nf.mac[0], nf.mac[1], nf.mac[2], nf.mac[3], nf.mac[4], nf.mac[5],
                  my_ip[0], my_ip[1], my_ip[2], my_ip[3]);
    if (!pinging) {
        uint64_t end = now_ns() + serve * 1000000000UL;
        while (now_ns() < end) {
            long n = netfront_recv(&nf, frame, sizeof(frame), end);
            if (n > 0)
                handle(n);
        }
        pvcons_printf("net-test: PASS (served %lu s)\n", (unsigned long)serve);
        return 0;
    }
    for (int tries = 0; !have_peer_mac; tries++) {
        uint64_t t = now_ns() + 200000000UL;
        if (tries == 300)
            FAIL("no ARP reply from the peer\n");
        send_arp(1, 0, peer_ip);
        while (!have_peer_mac) {
            long n = netfront_recv(&nf, frame, sizeof(frame), t);
            if (n <= 0)
                break;
            handle(n);
        }
    }
    pvcons_printf("net-test: peer %u.%u.%u.%u is at %02x:%02x:%02x:%02x:%02x:%02x\n",
                  peer_ip[0], peer_ip[1], peer_ip[2], peer_ip[3], peer_mac[0], peer_mac[1],
                  peer_mac[2], peer_mac[3], peer_mac[4], peer_mac[5]);
    {
        uint64_t total = 0, got = 0;
        uint8_t payload[56];
        for (unsigned int i = 0; i < sizeof(payload); i++)
            payload[i] = i;
        for (uint64_t seq = 1; seq <= count; seq++) {
            uint64_t t0 = now_ns(), deadline = t0 + 5000000000UL;
            long r = -1;
            send_icmp(peer_mac, peer_ip, 8, 0x7e57, seq, payload, sizeof(payload));
            while (r != (long)seq) {
                long n = netfront_recv(&nf, frame, sizeof(frame), deadline);
                if (n <= 0)
                    break;
                r = handle(n);
            }
            if (r == (long)seq) {
                uint64_t us = (now_ns() - t0) / 1000;
                total += us;
                got++;
                pvcons_printf("net-test: reply seq %lu time %lu us\n", (unsigned long)seq,
                              (unsigned long)us);
            }
        }
        pvcons_printf("net-test: %lu/%lu replies, avg %lu us\n", (unsigned long)got,
                      (unsigned long)count, (unsigned long)(got ? total / got : 0));
        if (got != count)
            FAIL("lost %lu echo replies\n", (unsigned long)(count - got));
    }
    if (cmdline_u64("blast", 0)) {
        uint64_t n = cmdline_u64("blast", 0), size = cmdline_u64("size", 1400), t0;
        if (size < 60 || size > 1514)
            FAIL("size=%lu outside 60..1514\n", (unsigned long)size);
        memset(out, 0, size);
        memcpy(out, peer_mac, 6);
        memcpy(out + 6, nf.mac, 6);
        put16(out + 12, ETH_P_BLAST);
        t0 = now_ns();
        for (uint64_t i = 0; i < n; i++) {
            out[14] = i & 0x7f;
            if ((rc = netfront_send(&nf, out, size)))
                FAIL("blast send: %ld\n", rc);
        }
        pvcons_printf("net-test: sent %lu frames of %lu bytes in %lu us (%lu kicks, %lu waits %lu us)\n",
                      (unsigned long)n, (unsigned long)size,
                      (unsigned long)((now_ns() - t0) / 1000), nf.kicks, nf.waits, nf.wait_ns / 1000);
        /* End markers for a second: the peer's backend drops what its full
         * rx queue cannot hold (as netback does), markers included. */
        out[14] = 0xff;
        for (int i = 0; i < 50; i++) {
            netfront_send(&nf, out, 60);
            sleep_ns(20000000);
        }
    }
    pvcons_printf("net-test: PASS\n");
    return 0;
}
