// SPDX-License-Identifier: GPL-2.0-only
/*
 * The server's count of connections before HELLO (src/server/handshakes.c):
 * the total cap, the cap per source address, and the packed table of
 * addresses as they come and go.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include "handshakes.h"
#include "tap.h"

static struct hs_addr v4(const char *s)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };

	inet_pton(AF_INET, s, &sin.sin_addr);
	return hs_addr_of((struct sockaddr *)&sin);
}

static struct hs_addr v6(const char *s)
{
	struct sockaddr_in6 sin6 = { .sin6_family = AF_INET6 };

	inet_pton(AF_INET6, s, &sin6.sin6_addr);
	return hs_addr_of((struct sockaddr *)&sin6);
}

int main(void)
{
	struct handshakes h;
	struct hs_addr a = v4("192.0.2.1"), b = v4("192.0.2.2"), c = v6("2001:db8::1"),
		       mapped = v6("::ffff:192.0.2.1"), none = hs_addr_of(NULL);
	struct hs_addr many[40];
	unsigned int i, n;
	int bad;

	ok(!memcmp(&a, &mapped, sizeof(a)), "an IPv4-mapped IPv6 address is its IPv4 address");
	ok(memcmp(&a, &b, sizeof(a)) && memcmp(&a, &c, sizeof(a)), "different addresses differ");
	ok(none.family == 0, "no address: one shared key");

	ok(handshakes_init(&h, 10, 3) == 0, "init: 10 in all, 3 per address");
	for (i = 0, n = 0; i < 5; i++)
		n += handshakes_enter(&h, &a) == HS_OK;
	ok(n == 3, "an address gets 3 of 5 (%u)", n);
	ok(handshakes_enter(&h, &a) == HS_PER_ADDR, "the 4th from it is refused by the per-address cap");
	ok(handshakes_enter(&h, &mapped) == HS_PER_ADDR, "also as an IPv4-mapped address");
	ok(handshakes_enter(&h, &b) == HS_OK && handshakes_enter(&h, &c) == HS_OK,
	   "other addresses still get in");
	ok(handshakes_count(&h, NULL) == 5 && handshakes_count(&h, &a) == 3 &&
		   handshakes_count(&h, &b) == 1,
	   "counts: 5 in all, 3 from a, 1 from b");
	handshakes_leave(&h, &a);
	ok(handshakes_count(&h, &a) == 2 && handshakes_enter(&h, &a) == HS_OK,
	   "one from a left: a gets one again");
	handshakes_leave(&h, &b);
	ok(handshakes_count(&h, &b) == 0 && h.naddrs == 2, "b's last left: its entry went (%u)",
	   h.naddrs);
	handshakes_leave(&h, &b);
	ok(handshakes_count(&h, NULL) == 4, "leaving twice counts once");
	handshakes_leave(&h, &c);
	for (i = 0; i < 3; i++)
		handshakes_leave(&h, &a);
	ok(handshakes_count(&h, NULL) == 0 && h.naddrs == 0, "all left: empty");
	handshakes_destroy(&h);

	/* The total cap, over many addresses coming and going. */
	ok(handshakes_init(&h, 30, 2) == 0, "init: 30 in all, 2 per address");
	for (i = 0; i < 40; i++) {
		char s[32];

		snprintf(s, sizeof(s), "198.51.100.%u", i + 1);
		many[i] = v4(s);
	}
	for (i = 0, n = 0; i < 40; i++)
		n += handshakes_enter(&h, &many[i]) == HS_OK;
	ok(n == 30 && h.naddrs == 30, "40 addresses: 30 get in (%u), 30 entries", n);
	ok(handshakes_enter(&h, &many[0]) == HS_TOTAL, "then the total cap refuses even a known one");
	/* Every other address leaves; its entry's place is taken by another. */
	for (i = 0; i < 30; i += 2)
		handshakes_leave(&h, &many[i]);
	for (i = 0, bad = 0; i < 30; i++)
		bad += handshakes_count(&h, &many[i]) != (i % 2 ? 1u : 0u);
	ok(!bad && h.naddrs == 15 && handshakes_count(&h, NULL) == 15,
	   "half left: the others are still counted, each once (%d wrong)", bad);
	for (i = 0, n = 0; i < 40; i++)
		n += handshakes_enter(&h, &many[i]) == HS_OK;
	ok(n == 15 && handshakes_count(&h, NULL) == 30,
	   "the freed room goes to whoever comes next (%u)", n);
	handshakes_destroy(&h);
	return tap_done();
}
