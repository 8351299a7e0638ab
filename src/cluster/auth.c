/*
 * cluster layer: the cluster token and the challenge every connection
 * starts with. The acceptor sends 32 random bytes; the connector answers
 * HMAC-SHA256(token, nonce || role) in its HELLO. OpenSSL's libcrypto
 * provides the random bytes, the MAC and a constant-time compare.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "weft/cluster.h"
#include "weft/core.h"

int wf_token_from_hex(struct wf_token *t, const char *hex) {
    size_t n = strlen(hex);
    while (n && (hex[n - 1] == '\n' || hex[n - 1] == '\r' || hex[n - 1] == ' '))
        n--;
    if (n < 16 || n > 128 || n % 2) return wf_error(WF_ERR_INVALID, "a cluster token is 16 to 128 hex digits");
    for (size_t i = 0; i < n; i += 2) {
        unsigned v;
        char two[3] = {hex[i], hex[i + 1], 0};
        if (sscanf(two, "%2x", &v) != 1 || !strchr("0123456789abcdefABCDEF", hex[i]) ||
            !strchr("0123456789abcdefABCDEF", hex[i + 1]))
            return wf_error(WF_ERR_INVALID, "a cluster token is 16 to 128 hex digits; '%c%c' is not one", hex[i],
                            hex[i + 1]);
        t->key[i / 2] = (uint8_t)v;
    }
    t->len = n / 2;
    return WF_OK;
}

int wf_token_load(struct wf_token *t, const char *file) {
    const char *env = getenv("WEFT_TOKEN");
    if (env && *env) return wf_error_prefix(wf_token_from_hex(t, env), "WEFT_TOKEN") == WF_OK ? WF_OK : WF_ERR_INVALID;
    if (!file) file = "weft-token";
    char *text;
    size_t len;
    int rc = wf_read_file(file, &text, &len);
    if (rc < 0)
        return wf_error(WF_ERR_AUTH,
                        "no cluster token: WEFT_TOKEN is not set and %s cannot be read (the coordinator writes it; "
                        "pass --token-file)",
                        file);
    rc = wf_token_from_hex(t, text);
    wf_free(text);
    if (rc < 0) return wf_error_prefix(rc, "%s", file);
    return WF_OK;
}

int wf_token_generate(struct wf_token *t, char hex[129], const char *file) {
    t->len = 32;
    if (RAND_bytes(t->key, (int)t->len) != 1) return wf_error(WF_ERR_INTERNAL, "no random bytes for a cluster token");
    for (size_t i = 0; i < t->len; i++)
        snprintf(hex + 2 * i, 3, "%02x", t->key[i]);
    if (!file) return WF_OK;
    int fd = open(file, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) return wf_error(WF_ERR_IO, "%s: cannot write the cluster token", file);
    size_t n = strlen(hex);
    int ok = write(fd, hex, n) == (ssize_t)n && write(fd, "\n", 1) == 1;
    ok &= close(fd) == 0;
    return ok ? WF_OK : wf_error(WF_ERR_IO, "%s: cannot write the cluster token", file);
}

static void mac_of(const struct wf_token *t, const uint8_t nonce[WF_NONCE], uint32_t role, uint8_t out[WF_MAC]) {
    uint8_t msg[WF_NONCE + 4];
    memcpy(msg, nonce, WF_NONCE);
    for (int i = 0; i < 4; i++)
        msg[WF_NONCE + i] = (uint8_t)(role >> (8 * i));
    unsigned len = WF_MAC;
    HMAC(EVP_sha256(), t->key, (int)t->len, msg, sizeof msg, out, &len);
}

/* Until the peer has proved it holds the token: the first-frame cap and the per-type caps. */
static void guard(struct wf_conn *c) {
    c->type_max = wf_msg_max_len;
    if (c->max_len > WF_AUTH_FRAME_MAX) c->max_len = WF_AUTH_FRAME_MAX;
}

int wf_auth_begin(struct wf_auth *a, struct wf_conn *c, double timeout_s) {
    memset(a, 0, sizeof *a);
    a->c = *c;
    a->timeout_s = timeout_s;
    a->deadline = wf_now() + timeout_s;
    a->max_len = c->max_len;
    guard(&a->c);
    struct wf_msg ch = {.type = WF_M_CHALLENGE};
    int rc = RAND_bytes(ch.nonce, WF_NONCE) == 1 ? WF_OK : wf_error(WF_ERR_INTERNAL, "no random bytes for a challenge");
    memcpy(a->nonce, ch.nonce, WF_NONCE);
    /* 48 bytes into a new socket's empty send buffer: never waits */
    if (rc == WF_OK) rc = wf_msg_send(&a->c, &ch, 0.0);
    if (rc < 0) wf_conn_close(&a->c);
    return rc;
}

int wf_auth_step(struct wf_auth *a, const struct wf_token *t, struct wf_msg *hello) {
    memset(hello, 0, sizeof *hello);
    int rc = wf_msg_recv(&a->c, hello, 0.0);
    if (rc == WF_ERR_TIMEOUT && a->c.fd >= 0) { /* nothing more yet; what came is kept */
        if (wf_now() < a->deadline) return 0;
        rc = wf_error(WF_ERR_TIMEOUT, "%s: no HELLO within %.1f s of connecting", a->c.name, a->timeout_s);
    }
    if (rc == WF_OK && hello->type != WF_M_HELLO) {
        rc = wf_error(WF_ERR_PEER, "%s: expected HELLO, got %s", a->c.name, wf_msg_name(hello->type));
    } else if (rc == WF_OK) {
        uint8_t want[WF_MAC];
        mac_of(t, a->nonce, hello->role, want);
        if (CRYPTO_memcmp(want, hello->mac, WF_MAC)) {
            rc = wf_error(WF_ERR_AUTH, "%s: refused: it does not have the cluster token", a->c.name);
            char keep[512];
            snprintf(keep, sizeof keep, "%s", wf_errmsg());
            struct wf_msg no = {.type = WF_M_REFUSE, .text = (char *)"wrong cluster token or protocol"};
            wf_msg_send(&a->c, &no, 0.0); /* a courtesy: a peer that does not read gets nothing */
            wf_error(WF_ERR_AUTH, "%s", keep);
        }
    }
    a->c.max_len = a->max_len;
    if (rc < 0) {
        wf_msg_free(hello);
        wf_conn_close(&a->c);
        return rc;
    }
    return 1;
}

int wf_auth_accept(struct wf_conn *c, const struct wf_token *t, struct wf_msg *hello, double timeout_s) {
    struct wf_auth a;
    memset(hello, 0, sizeof *hello);
    int rc = wf_auth_begin(&a, c, timeout_s);
    while (rc == WF_OK) {
        struct pollfd pf = {.fd = a.c.fd, .events = POLLIN};
        double left = a.deadline - wf_now();
        if (poll(&pf, 1, left > 0 ? (int)(left * 1000) + 1 : 0) < 0 && errno != EINTR) {
            rc = wf_error(WF_ERR_IO, "%s: poll: %s", a.c.name, strerror(errno));
            wf_conn_close(&a.c);
            break;
        }
        rc = wf_auth_step(&a, t, hello);
    }
    *c = a.c;
    return rc < 0 ? rc : WF_OK;
}

int wf_auth_connect(struct wf_conn *c, const struct wf_token *t, struct wf_msg *hello, double timeout_s) {
    struct wf_msg ch;
    uint32_t max_len = c->max_len;
    guard(c); /* a listener that is not ours gets no more room than ours would give it */
    int rc = wf_msg_recv(c, &ch, timeout_s);
    c->max_len = max_len;
    if (rc < 0) return rc;
    if (ch.type != WF_M_CHALLENGE) {
        wf_msg_free(&ch);
        return wf_error(WF_ERR_PEER, "%s: expected CHALLENGE, got %s", c->name, wf_msg_name(ch.type));
    }
    hello->type = WF_M_HELLO;
    mac_of(t, ch.nonce, hello->role, hello->mac);
    wf_msg_free(&ch);
    return wf_msg_send(c, hello, timeout_s);
}
