/* Optional C accelerator for the protocol core: XOR masking (RFC 6455 5.3).
 *
 * apply_mask(data, mask) -> bytes gives the same bytes as the pure-Python
 * syncws.protocol.masking.py_apply_mask; the tests check it with hypothesis.
 * Built when a compiler is present (setup.py marks it optional); syncws works
 * without it.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* Payloads this big are masked with the GIL released. Below it, the hand-off
 * would cost more than the work: a thread that gives the GIL up while another
 * waits for it waits in turn to get it back. */
#define UNLOCKED_MIN (64 * 1024)

static void
xor_mask(const void *data, const void *mask, void *result, Py_ssize_t length)
{
    const unsigned char *in = (const unsigned char *)data;
    const unsigned char *key = (const unsigned char *)mask;
    unsigned char *out = (unsigned char *)result;
    Py_ssize_t i = 0;
    uint64_t wide;
    unsigned char pattern[8];

    /* Eight bytes at a time: the key repeated twice, as one 64-bit word. */
    memcpy(pattern, key, 4);
    memcpy(pattern + 4, key, 4);
    memcpy(&wide, pattern, 8);
    for (; i + 8 <= length; i += 8) {
        uint64_t chunk;
        memcpy(&chunk, in + i, 8);
        chunk ^= wide;
        memcpy(out + i, &chunk, 8);
    }
    for (; i < length; i++) {
        out[i] = in[i] ^ key[i & 3];
    }
}

static PyObject *
apply_mask(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer data, mask;
    PyObject *result = NULL;

    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "apply_mask() takes data and mask");
        return NULL;
    }
    if (PyObject_GetBuffer(args[0], &data, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    if (PyObject_GetBuffer(args[1], &mask, PyBUF_SIMPLE) < 0) {
        PyBuffer_Release(&data);
        return NULL;
    }
    if (mask.len != 4) {
        PyErr_SetString(PyExc_ValueError, "the mask must be 4 bytes");
        goto done;
    }

    result = PyBytes_FromStringAndSize(NULL, data.len);
    if (result == NULL) {
        goto done;
    }
    if (data.len < UNLOCKED_MIN) {
        xor_mask(data.buf, mask.buf, PyBytes_AS_STRING(result), data.len);
    }
    else {
        Py_BEGIN_ALLOW_THREADS
        xor_mask(data.buf, mask.buf, PyBytes_AS_STRING(result), data.len);
        Py_END_ALLOW_THREADS
    }

done:
    PyBuffer_Release(&mask);
    PyBuffer_Release(&data);
    return result;
}

static PyMethodDef speedups_methods[] = {
    {"apply_mask", (PyCFunction)(void (*)(void))apply_mask, METH_FASTCALL,
     "Return data XORed with the 4-byte mask repeated."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef speedups_module = {
    PyModuleDef_HEAD_INIT, "syncws.protocol._speedups",
    "C accelerator for masking; optional.", -1, speedups_methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    return PyModule_Create(&speedups_module);
}
