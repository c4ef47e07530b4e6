/* Optional C accelerator for the protocol core: XOR masking (RFC 6455 5.3)
 * and the short roads for a whole message of one frame.
 *
 * apply_mask(data, mask) -> bytes gives the same bytes as the pure-Python
 * syncws.protocol.masking.py_apply_mask; whole_frame and encode_whole the
 * same results as syncws.protocol.framing.py_whole_frame and
 * py_encode_whole. The tests check each pair on the same cases (hypothesis
 * for masking). Built when a compiler is present (setup.py marks it
 * optional); syncws works without it.
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

/* whole_frame(data, masked) -> (opcode, payload) | None: see py_whole_frame. */
static PyObject *
whole_frame(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer data;
    PyObject *payload = NULL, *result = NULL;
    const unsigned char *bytes;
    Py_ssize_t length, start = 2;
    int masked;

    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "whole_frame() takes data and masked");
        return NULL;
    }
    masked = PyObject_IsTrue(args[1]);
    if (masked < 0) {
        return NULL;
    }
    if (PyObject_GetBuffer(args[0], &data, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    bytes = (const unsigned char *)data.buf;
    if (data.len < 2 || (bytes[0] != 0x81 && bytes[0] != 0x82)
        || ((bytes[1] & 0x80) != 0) != (masked != 0)) {
        goto decline;
    }
    length = bytes[1] & 0x7F;
    if (length == 127) {
        goto decline;
    }
    if (length == 126) {
        if (data.len < 4) {
            goto decline;
        }
        length = ((Py_ssize_t)bytes[2] << 8) | bytes[3];
        start = 4;
    }
    if (data.len != start + (masked ? 4 : 0) + length) {
        goto decline;
    }
    payload = PyBytes_FromStringAndSize(NULL, length);
    if (payload == NULL) {
        goto done;
    }
    if (masked) {
        xor_mask(bytes + start + 4, bytes + start, PyBytes_AS_STRING(payload), length);
    }
    else {
        memcpy(PyBytes_AS_STRING(payload), bytes + start, length);
    }
    result = Py_BuildValue("(iN)", bytes[0] & 0x0F, payload);
    goto done;

decline:
    result = Py_NewRef(Py_None);
done:
    PyBuffer_Release(&data);
    return result;
}

/* encode_whole(payload, first, mask) -> bytes: see py_encode_whole. */
static PyObject *
encode_whole(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer payload, mask;
    PyObject *result = NULL;
    unsigned char *out;
    Py_ssize_t header;
    long first;
    int masked;

    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "encode_whole() takes payload, first and mask");
        return NULL;
    }
    first = PyLong_AsLong(args[1]);
    if (first == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (first < 0 || first > 255) {
        PyErr_SetString(PyExc_ValueError, "the first byte must be in range(256)");
        return NULL;
    }
    masked = args[2] != Py_None;
    if (PyObject_GetBuffer(args[0], &payload, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    if (masked) {
        if (PyObject_GetBuffer(args[2], &mask, PyBUF_SIMPLE) < 0) {
            PyBuffer_Release(&payload);
            return NULL;
        }
        if (mask.len != 4) {
            PyErr_SetString(PyExc_ValueError, "the mask must be 4 bytes");
            goto done;
        }
    }
    if (payload.len >= 65536) {
        PyErr_SetString(PyExc_ValueError, "a whole frame here carries under 64 KiB");
        goto done;
    }
    header = payload.len < 126 ? 2 : 4;
    result = PyBytes_FromStringAndSize(NULL, header + (masked ? 4 : 0) + payload.len);
    if (result == NULL) {
        goto done;
    }
    out = (unsigned char *)PyBytes_AS_STRING(result);
    out[0] = (unsigned char)first;
    if (header == 2) {
        out[1] = (unsigned char)((masked ? 0x80 : 0) | payload.len);
    }
    else {
        out[1] = (unsigned char)((masked ? 0x80 : 0) | 126);
        out[2] = (unsigned char)(payload.len >> 8);
        out[3] = (unsigned char)(payload.len & 0xFF);
    }
    if (masked) {
        memcpy(out + header, mask.buf, 4);
        xor_mask(payload.buf, mask.buf, out + header + 4, payload.len);
    }
    else {
        memcpy(out + header, payload.buf, payload.len);
    }

done:
    if (masked) {
        PyBuffer_Release(&mask);
    }
    PyBuffer_Release(&payload);
    return result;
}

static PyMethodDef speedups_methods[] = {
    {"apply_mask", (PyCFunction)(void (*)(void))apply_mask, METH_FASTCALL,
     "Return data XORed with the 4-byte mask repeated."},
    {"whole_frame", (PyCFunction)(void (*)(void))whole_frame, METH_FASTCALL,
     "Return (opcode, payload) if data is exactly one whole data frame; else None."},
    {"encode_whole", (PyCFunction)(void (*)(void))encode_whole, METH_FASTCALL,
     "Return a final data frame of under 64 KiB as one bytes object."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef speedups_module = {
    PyModuleDef_HEAD_INIT, "syncws.protocol._speedups",
    "C accelerator for masking and whole frames; optional.", -1, speedups_methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    return PyModule_Create(&speedups_module);
}
