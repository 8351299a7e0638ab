/*
 * cluster layer: the cluster token and the challenge every connection
 * starts with. The acceptor sends 32 random bytes; the connector answers
 * HMAC-SHA256(token, nonce || role) in its HELLO. OpenSSL's libcrypto
 * provides the random bytes, the MAC and a constant-time compare.
 */
#include <fcntl.h>
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

int wf_auth_accept(struct wf_conn *c, const struct wf_token *t, struct wf_msg *hello, double timeout_s) {
    struct wf_msg ch = {.type = WF_M_CHALLENGE};
    memset(hello, 0, sizeof *hello);
    if (RAND_bytes(ch.nonce, WF_NONCE) != 1) return wf_error(WF_ERR_INTERNAL, "no random bytes for a challenge");
    int rc = wf_msg_send(c, &ch, timeout_s);
    if (rc < 0) return rc;
    /* nothing is allocated for a peer that has not proved it holds the token: its first frame (a
     * HELLO is under 1 KiB) is refused above WF_AUTH_FRAME_MAX before its payload is read */
    uint32_t max_len = c->max_len;
    c->max_len = WF_AUTH_FRAME_MAX < max_len ? WF_AUTH_FRAME_MAX : max_len;
    rc = wf_msg_recv(c, hello, timeout_s);
    c->max_len = max_len;
    if (rc < 0) return rc;
    uint8_t want[WF_MAC];
    if (hello->type != WF_M_HELLO) {
        rc = wf_error(WF_ERR_PEER, "%s: expected HELLO, got %s", c->name, wf_msg_name(hello->type));
    } else {
        mac_of(t, ch.nonce, hello->role, want);
        if (CRYPTO_memcmp(want, hello->mac, WF_MAC))
            rc = wf_error(WF_ERR_AUTH, "%s: refused: it does not have the cluster token", c->name);
    }
    if (rc < 0) {
        struct wf_msg no = {.type = WF_M_REFUSE, .text = (char *)"wrong cluster token or protocol"};
        if (rc == WF_ERR_AUTH) {
            char keep[512];
            snprintf(keep, sizeof keep, "%s", wf_errmsg());
            wf_msg_send(c, &no, 1.0);
            wf_error(WF_ERR_AUTH, "%s", keep);
        }
        wf_msg_free(hello);
    }
    return rc;
}

int wf_auth_connect(struct wf_conn *c, const struct wf_token *t, struct wf_msg *hello, double timeout_s) {
    struct wf_msg ch;
    int rc = wf_msg_recv(c, &ch, timeout_s);
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
