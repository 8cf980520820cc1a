/* The sshd part of the login-failure scan, for speed: the same lines, wordings and
 * captures as the sshd rules in detectors.py (which stay the reference: the tests run
 * both on the same corpus and on generated lines and compare). Lines of other programs,
 * or in another shape, are handed back for the regular expressions.
 *
 * sshd(buf, start, end, fmt, want_users, known) scans the whole lines of
 * buf[start:end] (buf[start-1] is a newline) and returns
 *   (failed, extra, pre, pre_noaddr, success, users, others, understood)
 * failed:      [(pid, ip)] one per Failed line (a "message repeated n times" line too)
 * extra:       [((pid, ip), n - 1)] for the repeated lines
 * pre:         [(pid, ip)] Invalid user, not allowed, pam_unix auth failure, too many
 * pre_noaddr:  [pid] old sshd's "Disconnecting: Too many authentication failures"
 * success:     [(user, ip)] Accepted
 * users:       [(ip, user, n)] per Failed line, when want_users
 * others:      bytes: every line of another program (or another shape), each after a
 *              newline; an sshd line no rule knows is neither counted nor handed back
 * understood:  lines matched here, and sshd lines that start with one of `known` (a
 *              tuple of bytes: detectors.py's harmless wordings, empty for the job)
 * Every read is bounded by the line's end: no byte outside buf[start:end] is looked at.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

typedef const unsigned char *P;

static int is_digit(unsigned char c) { return c >= '0' && c <= '9'; }
static int is_upper(unsigned char c) { return c >= 'A' && c <= 'Z'; }
static int is_lower(unsigned char c) { return c >= 'a' && c <= 'z'; }
static int is_ipc(unsigned char c) {
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') || c == ':' || c == '.';
}
/* \s of a bytes pattern: space, \t \n \r \f \v */
static int is_space(unsigned char c) { return c == ' ' || (c >= 9 && c <= 13); }
static int is_b64(unsigned char c) {
    return is_digit(c) || is_upper(c) || is_lower(c) || c == '+' || c == '/' || c == '=';
}

/* literal l at s (before e): the position after it, or NULL */
static P lit(P s, P e, const char *l) {
    size_t k = strlen(l);
    if (s == NULL || (size_t)(e - s) < k || memcmp(s, l, k) != 0) return NULL;
    return s + k;
}

static P find(P s, P e, const char *l) {
    size_t k = strlen(l);
    if ((size_t)(e - s) < k) return NULL;
    return (P)memmem(s, (size_t)(e - s), l, k);
}

/* [0-9A-Fa-f:.]{3,45}: the maximal run must be 3 to 45 long (what follows never continues it) */
static P ip(P s, P e, P *ip_end) {
    P q = s;
    while (q < e && is_ipc(*q)) q++;
    if (q - s < 3 || q - s > 45) return NULL;
    *ip_end = q;
    return q;
}

static P digits(P s, P e) {
    P q = s;
    while (q < e && is_digit(*q)) q++;
    return q > s ? q : NULL;
}

/* [A-Z][A-Z0-9-]* SHA256:[A-Za-z0-9+/=]+ */
static P keytype_fp(P s, P e) {
    if (s >= e || !is_upper(*s)) return NULL;
    s++;
    while (s < e && (is_upper(*s) || is_digit(*s) || *s == '-')) s++;
    s = lit(s, e, " SHA256:");
    if (s == NULL || s >= e || !is_b64(*s)) return NULL;
    while (s < e && is_b64(*s)) s++;
    return s;
}

/* SSH_KEYINFO then the given tail ("" or "]") at the line's end */
static int keyinfo_tail(P s, P e, const char *tail) {
    P t;
    if ((t = lit(s, e, tail)) != NULL && t == e) return 1;           /* no key info */
    s = lit(s, e, ": ");
    if (s == NULL) return 0;
    P k = keytype_fp(s, e);
    if (k == NULL) return 0;
    if ((t = lit(k, e, tail)) != NULL && t == e) return 1;
    /* certificate: " ID .{0,200} \(serial \d+\) CA TYPE SHA256:FP"; .{0,200} is greedy */
    P id = lit(k, e, " ID ");
    if (id == NULL) return 0;
    P last = (e - id > 200) ? id + 200 : e;
    for (P c = last; c >= id; c--) {
        P q = lit(c, e, " (serial ");
        if (q == NULL) continue;
        q = digits(q, e);
        q = q ? lit(q, e, ") CA ") : NULL;
        q = q ? keytype_fp(q, e) : NULL;
        if (q && (t = lit(q, e, tail)) != NULL && t == e) return 1;
    }
    return 0;
}

static const char *METHODS[] = {"password", "publickey", "keyboard-interactive/pam",
                                "keyboard-interactive", "hostbased", "gssapi-with-mic", "none", NULL};

/* "<method> for " */
static P method_for(P s, P e) {
    for (int i = 0; METHODS[i]; i++) {
        P q = lit(s, e, METHODS[i]);
        if (q && (q = lit(q, e, " for ")) != NULL) return q;
    }
    return NULL;
}

typedef struct { P user, user_end, ip, ip_end; } Cap;

/* what must follow the address, to the line's end */
typedef int (*Rest)(P after_ip, P e, const char *arg);

/* (?P<user>.*?)<sep>IP<rest>$ with a lazy user: the first separator after u whose address
 * and rest fit, as the regular expression's backtracking finds it */
static int lazy_user_ip(P u, P e, const char *sep, Rest rest, const char *arg, Cap *c) {
    size_t k = strlen(sep);
    P f = u;
    while ((f = find(f, e, sep)) != NULL) {
        P ie, q = ip(f + k, e, &ie);
        if (q && rest(q, e, arg)) {
            c->user = u; c->user_end = f; c->ip = f + k; c->ip_end = ie;
            return 1;
        }
        f++;
    }
    return 0;
}

/* (?:invalid user )?(?P<user>.*?) from IP<rest>: with the prefix first, as the regex tries it */
static int maybe_invalid(P s, P e, Rest rest, const char *arg, Cap *c) {
    P u = lit(s, e, "invalid user ");
    return (u && lazy_user_ip(u, e, " from ", rest, arg, c)) ||
           lazy_user_ip(s, e, " from ", rest, arg, c);
}

/* " port \d+ ssh2" KEYINFO <tail> */
static int port_ssh2_key(P q, P e, const char *tail) {
    q = lit(q, e, " port ");
    q = q ? digits(q, e) : NULL;
    q = q ? lit(q, e, " ssh2") : NULL;
    return q && keyinfo_tail(q, e, tail);
}

/* (?: port \d+)? */
static int opt_port(P q, P e, const char *unused) {
    if (q == e) return 1;
    q = lit(q, e, " port ");
    q = q ? digits(q, e) : NULL;
    return q == e;
}

/* " port \d+" <then> */
static int port_then(P q, P e, const char *then) {
    q = lit(q, e, " port ");
    q = q ? digits(q, e) : NULL;
    q = q ? lit(q, e, then) : NULL;
    return q == e;
}

static const char *NOT_ALLOWED[] = {"not listed in", "listed in", "none of user's groups are listed in",
                                    "a group is listed in", NULL};
static const char *LISTS[] = {"AllowUsers", "DenyUsers", "AllowGroups", "DenyGroups", NULL};

/* " not allowed because (not listed in|...) (AllowUsers|...)" */
static int not_allowed(P q, P e, const char *unused) {
    q = lit(q, e, " not allowed because ");
    for (int i = 0; q && NOT_ALLOWED[i]; i++) {
        P a = lit(q, e, NOT_ALLOWED[i]);
        a = a ? lit(a, e, " ") : NULL;
        for (int j = 0; a && LISTS[j]; j++)
            if (lit(a, e, LISTS[j]) == e) return 1;
    }
    return 0;
}

static P skip_nonspace(P q, P e) {
    while (q && q < e && !is_space(*q)) q++;
    return q;
}

enum { NONE, FAILED, REPEATED, PRE, PRE_NOADDR, SUCCESS, KNOWN };

/* one sshd message m..e: its kind and captures (the rules' order in detectors.py) */
static int classify(P m, P e, Cap *c, long *n, PyObject *known) {
    P q;
    memset(c, 0, sizeof(*c));
    if ((q = lit(m, e, "Failed ")) && (q = method_for(q, e)) && maybe_invalid(q, e, port_ssh2_key, "", c))
        return FAILED;
    if ((q = lit(m, e, "message repeated "))) {
        P d = digits(q, e);
        P r = d ? lit(d, e, " times: [ Failed ") : NULL;
        r = r ? method_for(r, e) : NULL;
        if (r && maybe_invalid(r, e, port_ssh2_key, "]", c)) {
            long v = 0;            /* the count: anything over 10^9 is taken as that */
            for (P x = q; x < d && v < 1000000000L; x++) v = v * 10 + (*x - '0');
            *n = v;
            return REPEATED;
        }
    }
    if ((q = lit(m, e, "Invalid user ")) && lazy_user_ip(q, e, " from ", opt_port, NULL, c))
        return PRE;
    if ((q = lit(m, e, "User ")) && lazy_user_ip(q, e, " from ", not_allowed, NULL, c))
        return PRE;
    if ((q = lit(m, e, "pam_unix(sshd:auth): authentication failure; logname="))) {
        /* logname=\S* uid=\d+ euid=\d+ tty=\S* ruser=\S* rhost=IP(?:  user=(?P<user>\S*))?$ */
        P r = skip_nonspace(q, e);
        r = lit(r, e, " uid=");  r = r ? digits(r, e) : NULL;
        r = r ? lit(r, e, " euid=") : NULL;  r = r ? digits(r, e) : NULL;
        r = r ? lit(r, e, " tty=") : NULL;  r = skip_nonspace(r, e);
        r = r ? lit(r, e, " ruser=") : NULL;  r = skip_nonspace(r, e);
        r = r ? lit(r, e, " rhost=") : NULL;
        P ie, a = r ? ip(r, e, &ie) : NULL;
        if (a) {
            P u = lit(a, e, "  user=");
            if (a == e || (u && skip_nonspace(u, e) == e)) {
                if (u) { c->user = u; c->user_end = e; }
                c->ip = r; c->ip_end = ie;
                return PRE;
            }
        }
    }
    if ((q = lit(m, e, "error: maximum authentication attempts exceeded for ")) &&
        maybe_invalid(q, e, port_then, " ssh2 [preauth]", c))
        return PRE;
    if ((q = lit(m, e, "Disconnecting "))) {
        P u = lit(q, e, "authenticating user ");
        if (u == NULL) u = lit(q, e, "invalid user ");
        if (u && lazy_user_ip(u, e, " ", port_then, ": Too many authentication failures [preauth]", c))
            return PRE;
    }
    if ((q = lit(m, e, "Disconnecting: Too many authentication failures"))) {
        /* (?: for (?:invalid user )?(?P<user>.*?))?(?: \[preauth\])?$ */
        if (q == e || lit(q, e, " [preauth]") == e) return PRE_NOADDR;
        P f = lit(q, e, " for ");
        if (f) {
            P u = lit(f, e, "invalid user ");
            c->user = u ? u : f;
            c->user_end = (e - c->user >= 10 && memcmp(e - 10, " [preauth]", 10) == 0) ? e - 10 : e;
            return PRE_NOADDR;
        }
    }
    if ((q = lit(m, e, "Accepted "))) {
        P r = skip_nonspace(q, e);
        if (r > q && (r = lit(r, e, " for ")) != NULL &&
            lazy_user_ip(r, e, " from ", port_ssh2_key, "", c))
            return SUCCESS;
    }
    /* the harmless wordings (the report's mode): detectors.py's list, passed in */
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(known); i++) {
        PyObject *k = PyTuple_GET_ITEM(known, i);
        if (!PyBytes_Check(k)) continue;
        Py_ssize_t len = PyBytes_GET_SIZE(k);
        if (e - m >= len && memcmp(m, PyBytes_AS_STRING(k), (size_t)len) == 0) return KNOWN;
    }
    return NONE;
}

/* the syslog prefix and the sshd program: the message start, or NULL (not ours) */
static P sshd_message(P s, P e, int fmt, P *pid, P *pid_end) {
    P q = s;
    if (fmt == 0) {             /* rfc3164: "Mmm dd hh:mm:ss host " */
        if (e - s < 17) return NULL;
        if (!is_upper(q[0]) || !is_lower(q[1]) || !is_lower(q[2]) || q[3] != ' ' ||
            !(q[4] == ' ' || is_digit(q[4])) || !is_digit(q[5]) || q[6] != ' ' ||
            !is_digit(q[7]) || !is_digit(q[8]) || q[9] != ':' || !is_digit(q[10]) ||
            !is_digit(q[11]) || q[12] != ':' || !is_digit(q[13]) || !is_digit(q[14]) || q[15] != ' ')
            return NULL;
        q += 16;
    } else {                    /* rfc3339: "YYYY-MM-DDT[\d:.]+(Z|+hh:mm) host " */
        if (e - s < 12) return NULL;
        for (int i = 0; i < 10; i++) {
            if (i == 4 || i == 7) { if (q[i] != '-') return NULL; }
            else if (!is_digit(q[i])) return NULL;
        }
        if (q[10] != 'T') return NULL;
        q += 11;
        P t = q;
        while (q < e && (is_digit(*q) || *q == ':' || *q == '.')) q++;
        if (q == t || q >= e) return NULL;
        if (*q == 'Z') q++;
        else if ((*q == '+' || *q == '-') && e - q >= 6 && is_digit(q[1]) && is_digit(q[2]) &&
                 q[3] == ':' && is_digit(q[4]) && is_digit(q[5])) q += 6;
        else return NULL;
        if (q >= e || *q != ' ') return NULL;
        q++;
    }
    P h = q;                    /* host: [^ \n]+ then a space */
    while (q < e && *q != ' ') q++;
    if (q == h || q >= e) return NULL;
    q++;
    P r = lit(q, e, "sshd");
    if (r == NULL) return NULL;
    P alt;
    if ((alt = lit(r, e, "-session")) || (alt = lit(r, e, "-auth"))) {
        if (alt < e && (*alt == '[' || (*alt == ':' && alt + 1 < e && alt[1] == ' '))) r = alt;
    }
    if (r < e && *r == '[') {
        P d = digits(r + 1, e);
        if (d && (d = lit(d, e, "]: ")) != NULL) {
            *pid = r + 1; *pid_end = d - 3;
            return d;
        }
        return NULL;
    }
    if ((r = lit(r, e, ": ")) != NULL) {
        *pid = r; *pid_end = r;          /* no pid: b"" as the regex's group */
        return r;
    }
    return NULL;
}

static PyObject *B(P s, P e) {
    return PyBytes_FromStringAndSize((const char *)s, s && e ? e - s : 0);
}

static int append_pair(PyObject *list, PyObject *a, PyObject *b) {
    if (a == NULL || b == NULL) { Py_XDECREF(a); Py_XDECREF(b); return -1; }
    PyObject *t = PyTuple_Pack(2, a, b);
    Py_DECREF(a); Py_DECREF(b);
    if (t == NULL) return -1;
    int rc = PyList_Append(list, t);
    Py_DECREF(t);
    return rc;
}

static PyObject *sshd(PyObject *self, PyObject *args) {
    Py_buffer view;
    Py_ssize_t start, end;
    int fmt, want_users;
    PyObject *known;
    if (!PyArg_ParseTuple(args, "y*nnipO!", &view, &start, &end, &fmt, &want_users,
                          &PyTuple_Type, &known))
        return NULL;
    PyObject *failed = PyList_New(0), *extra = PyList_New(0), *pre = PyList_New(0),
             *noaddr = PyList_New(0), *success = PyList_New(0), *users = PyList_New(0);
    PyObject *result = NULL, *others = NULL;
    char *out = NULL;
    Py_ssize_t out_len = 0, understood = 0;
    if (!failed || !extra || !pre || !noaddr || !success || !users) goto done;
    if (start < 1 || end > view.len || start > end) {
        PyErr_SetString(PyExc_ValueError, "bad range");
        goto done;
    }
    out = PyMem_Malloc((size_t)(end - start) + 2);
    if (out == NULL) { PyErr_NoMemory(); goto done; }
    P base = (P)view.buf;
    P s = base + start, stop = base + end;
    while (s < stop) {
        P e = memchr(s, '\n', (size_t)(stop - s));
        if (e == NULL) e = stop;
        P pid = NULL, pid_end = NULL;
        P m = sshd_message(s, e, fmt, &pid, &pid_end);
        int kind = NONE;
        Cap c;
        long n = 1;
        if (m != NULL) kind = classify(m, e, &c, &n, known);
        if (m != NULL && kind == NONE) {
            /* an sshd line no sshd rule knows: no other rule applies to sshd's lines */
        } else if (kind == NONE) {
            out[out_len++] = '\n';
            memcpy(out + out_len, s, (size_t)(e - s));
            out_len += e - s;
        } else {
            understood++;
            int rc = 0;
            if (kind == FAILED || kind == REPEATED || kind == PRE) {
                PyObject *key = PyTuple_New(2);
                if (key == NULL) goto done;
                PyObject *pb = B(pid, pid_end), *ib = B(c.ip, c.ip_end);
                if (pb == NULL || ib == NULL) { Py_XDECREF(pb); Py_XDECREF(ib); Py_DECREF(key); goto done; }
                PyTuple_SET_ITEM(key, 0, pb);
                PyTuple_SET_ITEM(key, 1, ib);
                rc = PyList_Append(kind == PRE ? pre : failed, key);
                if (rc == 0 && kind == REPEATED) {
                    Py_INCREF(key);
                    rc = append_pair(extra, key, PyLong_FromLong(n - 1));
                }
                if (rc == 0 && want_users && kind != PRE) {
                    PyObject *t = Py_BuildValue("(Ny#l)", B(c.ip, c.ip_end), (const char *)c.user,
                                                (Py_ssize_t)(c.user_end - c.user), n);
                    rc = t ? PyList_Append(users, t) : -1;
                    Py_XDECREF(t);
                }
                Py_DECREF(key);
            } else if (kind == PRE_NOADDR) {
                PyObject *pb = B(pid, pid_end);
                rc = pb ? PyList_Append(noaddr, pb) : -1;
                Py_XDECREF(pb);
            } else if (kind == SUCCESS) {
                rc = append_pair(success, B(c.user, c.user_end), B(c.ip, c.ip_end));
            }
            if (rc < 0) goto done;
        }
        s = e + 1;
    }
    others = PyBytes_FromStringAndSize(out, out_len);
    if (others == NULL) goto done;
    result = Py_BuildValue("(OOOOOOOn)", failed, extra, pre, noaddr, success, users, others,
                           understood);
done:
    PyMem_Free(out);
    Py_XDECREF(failed); Py_XDECREF(extra); Py_XDECREF(pre); Py_XDECREF(noaddr);
    Py_XDECREF(success); Py_XDECREF(users); Py_XDECREF(others);
    PyBuffer_Release(&view);
    return result;
}

static PyMethodDef methods[] = {
    {"sshd", sshd, METH_VARARGS, "Scan the sshd lines of buf[start:end]; see the module's source."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_sshscan", NULL, -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__sshscan(void) { return PyModule_Create(&module); }
