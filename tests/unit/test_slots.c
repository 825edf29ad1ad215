// SPDX-License-Identifier: GPL-2.0-only
/* The connection slot (credit) pool: src/client/slots.c. */
#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "transport/slots.h"
#include "tap.h"

static void test_fresh_pool(void)
{
	struct slot_pool p;
	int i, s;

	ok(slot_pool_init(&p, 0) == -EINVAL, "a pool of no slots is refused");
	ok(slot_pool_init(&p, 4) == 0, "a pool of 4 slots");
	ok(slot_pool_free(&p) == 4, "all 4 free");
	for (i = 0; i < 4; i++) {
		s = slot_get(&p);
		ok(s == i, "slot %d handed out in order (got %d)", i, s);
	}
	ok(slot_get(&p) == -EBUSY, "an exhausted pool says -EBUSY");
	ok(slot_pool_free(&p) == 0, "none free");
	slot_pool_destroy(&p);
}

static void test_put_and_reuse(void)
{
	struct slot_pool p;

	slot_pool_init(&p, 3);
	slot_get(&p);
	slot_get(&p);
	slot_get(&p);
	ok(slot_put(&p, 1) == 0, "slot 1 put back");
	ok(slot_get(&p) == 1, "the slot put back last is reused first");
	ok(slot_put(&p, 2) == 0 && slot_put(&p, 0) == 0, "two more put back");
	ok(slot_get(&p) == 0 && slot_get(&p) == 2, "reused LIFO");
	slot_pool_destroy(&p);
}

static void test_bad_puts(void)
{
	struct slot_pool p;
	int s;

	slot_pool_init(&p, 2);
	ok(slot_put(&p, 0) == -EINVAL, "putting a free slot is refused");
	s = slot_get(&p);
	ok(slot_put(&p, 2) == -EINVAL, "a slot out of range is refused");
	ok(slot_put(&p, (uint16_t)s) == 0, "a taken slot goes back");
	ok(slot_put(&p, (uint16_t)s) == -EINVAL, "a double put is refused");
	ok(slot_pool_free(&p) == 2, "the count is untouched by refused puts");
	slot_pool_destroy(&p);
}

static void test_reset(void)
{
	struct slot_pool p;
	bool seen[8];
	int i, s;

	slot_pool_init(&p, 8);
	for (i = 0; i < 5; i++)
		slot_get(&p);
	slot_pool_reset(&p);
	ok(slot_pool_free(&p) == 8, "reset frees every slot");
	memset(seen, 0, sizeof(seen));
	for (i = 0; i < 8; i++) {
		s = slot_get(&p);
		if (s >= 0 && s < 8)
			seen[s] = true;
	}
	for (i = 0; i < 8 && seen[i]; i++)
		;
	ok(i == 8, "after a reset each slot is handed out exactly once");
	ok(slot_put(&p, 3) == 0, "and can be put back");
	slot_pool_destroy(&p);
	slot_pool_destroy(&p);
	ok(p.free == NULL && p.size == 0, "destroy is idempotent");
}

static void test_full_depth(void)
{
	struct slot_pool p;
	int i, bad = 0;

	ok(slot_pool_init(&p, 1024) == 0, "the protocol's largest depth");
	for (i = 0; i < 1024; i++)
		bad += slot_get(&p) != i;
	ok(!bad && slot_get(&p) == -EBUSY, "1024 distinct slots, then -EBUSY");
	for (i = 1023; i >= 0; i--)
		bad += slot_put(&p, (uint16_t)i) != 0;
	ok(!bad && slot_pool_free(&p) == 1024, "all put back");
	slot_pool_destroy(&p);
}

int main(void)
{
	test_fresh_pool();
	test_put_and_reuse();
	test_bad_puts();
	test_reset();
	test_full_depth();
	return tap_done();
}
