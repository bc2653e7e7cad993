/* SPDX-License-Identifier: Apache-2.0 */
/* SipHash-2-4 (siphash.h), written from the paper's description: four 64-bit
 * words of state, two rounds per 8-byte block, four to finish. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "lib/siphash.h"

#define SIP_ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))

static uint64_t sip_le64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

static void sip_round(uint64_t v[4])
{
	v[0] += v[1]; v[1] = SIP_ROTL(v[1], 13); v[1] ^= v[0]; v[0] = SIP_ROTL(v[0], 32);
	v[2] += v[3]; v[3] = SIP_ROTL(v[3], 16); v[3] ^= v[2];
	v[0] += v[3]; v[3] = SIP_ROTL(v[3], 21); v[3] ^= v[0];
	v[2] += v[1]; v[1] = SIP_ROTL(v[1], 17); v[1] ^= v[2]; v[2] = SIP_ROTL(v[2], 32);
}

uint64_t siphash24(const uint8_t key[16], const void *data, size_t len)
{
	const uint8_t *p = data, *end = p + (len & ~(size_t)7);
	uint64_t k0 = sip_le64(key), k1 = sip_le64(key + 8), m;
	uint64_t v[4] = {
		k0 ^ 0x736f6d6570736575ULL, k1 ^ 0x646f72616e646f6dULL,
		k0 ^ 0x6c7967656e657261ULL, k1 ^ 0x7465646279746573ULL,
	};

	for (; p < end; p += 8) {
		m = sip_le64(p);
		v[3] ^= m;
		sip_round(v);
		sip_round(v);
		v[0] ^= m;
	}
	/* the last block: the remaining bytes, and the length's low byte on top */
	m = (uint64_t)(len & 0xff) << 56;
	for (size_t i = 0; i < (len & 7); i++)
		m |= (uint64_t)p[i] << (8 * i);
	v[3] ^= m;
	sip_round(v);
	sip_round(v);
	v[0] ^= m;
	v[2] ^= 0xff;
	for (int i = 0; i < 4; i++)
		sip_round(v);
	return v[0] ^ v[1] ^ v[2] ^ v[3];
}

static uint8_t sip_key[16];
static pthread_once_t sip_key_once = PTHREAD_ONCE_INIT;

/* getrandom() blocks only until the kernel's pool is first seeded, early at
 * boot; /dev/urandom is the fallback for a kernel without it. Should both
 * fail, the clocks and the pid still make the key differ per process. */
static void sip_key_init(void)
{
	size_t got = 0;
	ssize_t r;
	int fd;

	while (got < sizeof(sip_key)) {
		r = getrandom(sip_key + got, sizeof(sip_key) - got, 0);
		if (r == -1 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	if (got < sizeof(sip_key) && (fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC)) != -1) {
		got = 0;
		while (got < sizeof(sip_key) &&
		       (r = read(fd, sip_key + got, sizeof(sip_key) - got)) > 0)
			got += (size_t)r;
		close(fd);
	}
	if (got < sizeof(sip_key)) {
		struct timespec a, b;
		uint64_t w[2];

		clock_gettime(CLOCK_REALTIME, &a);
		clock_gettime(CLOCK_MONOTONIC, &b);
		w[0] = (uint64_t)a.tv_nsec ^ ((uint64_t)a.tv_sec << 20) ^ (uint64_t)getpid();
		w[1] = (uint64_t)b.tv_nsec ^ ((uint64_t)b.tv_sec << 32) ^ (uint64_t)(uintptr_t)&a;
		memcpy(sip_key, w, sizeof(sip_key));
	}
}

uint64_t siphash_str(const char *s)
{
	pthread_once(&sip_key_once, sip_key_init);
	return siphash24(sip_key, s, strlen(s));
}
