/* Optional C accelerator for the read turn (turn.py): a lock, and a wait for
 * one socket that takes it, both without the GIL in between.
 *
 * When thousands of handler threads wake at once (every peer sent at once),
 * each one that returns from poll() with Python's call first needs the GIL,
 * just to queue for the read turn: thousands of threads waiting for the
 * GIL, each waking every 5 ms, and the one holding the turn waits among
 * them. Here a thread goes from poll() straight to the turn's lock, asleep
 * without timeouts, and asks for the GIL only once it holds the turn.
 * Built where a compiler is present (setup.py marks it optional); turn.py
 * works without it. POSIX only (poll.h).
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <pythread.h>

typedef struct {
    PyObject_HEAD
    PyThread_type_lock lock;
    int locked;
} TurnObject;

static PyObject *
turn_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    TurnObject *self;

    if (PyTuple_GET_SIZE(args) || (kwargs != NULL && PyDict_GET_SIZE(kwargs))) {
        PyErr_SetString(PyExc_TypeError, "Turn() takes no arguments");
        return NULL;
    }
    self = (TurnObject *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->lock = PyThread_allocate_lock();
    if (self->lock == NULL) {
        Py_DECREF(self);
        return PyErr_NoMemory();
    }
    self->locked = 0;
    return (PyObject *)self;
}

static void
turn_dealloc(TurnObject *self)
{
    if (self->lock != NULL) {
        if (self->locked) {
            PyThread_release_lock(self->lock);
        }
        PyThread_free_lock(self->lock);
    }
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static void
take(TurnObject *self)
{
    /* Called without the GIL, or with it when the lock is free. */
    PyThread_acquire_lock(self->lock, WAIT_LOCK);
}

static PyObject *
turn_acquire(TurnObject *self, PyObject *unused)
{
    if (!PyThread_acquire_lock(self->lock, NOWAIT_LOCK)) {
        Py_BEGIN_ALLOW_THREADS
        take(self);
        Py_END_ALLOW_THREADS
    }
    self->locked = 1;
    Py_RETURN_TRUE;
}

static PyObject *
turn_release(TurnObject *self, PyObject *unused)
{
    if (!self->locked) {
        PyErr_SetString(PyExc_RuntimeError, "release unlocked turn");
        return NULL;
    }
    self->locked = 0;
    PyThread_release_lock(self->lock);
    Py_RETURN_NONE;
}

static PyObject *
turn_locked(TurnObject *self, PyObject *unused)
{
    return PyBool_FromLong(self->locked);
}

/* wait_then_acquire(fd, events, timeout_ms) -> bool: poll() one descriptor
 * (timeout_ms < 0: no limit), then take the turn, whatever poll() said; the
 * GIL is let go for both. True if the descriptor is ready. Whatever it
 * raises (bad arguments, a signal handler that raised, poll's own error),
 * it raises with the turn taken: the caller always releases it. */
static PyObject *
turn_wait_then_acquire(TurnObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    struct pollfd target;
    long fd = -1, events = 0, timeout = 0;
    int ready = 0, error = 0, bad = 0;

    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "wait_then_acquire() takes fd, events and timeout_ms");
        bad = 1;
    }
    if (!bad && (((fd = PyLong_AsLong(args[0])) == -1 && PyErr_Occurred())
                 || ((events = PyLong_AsLong(args[1])) == -1 && PyErr_Occurred())
                 || ((timeout = PyLong_AsLong(args[2])) == -1 && PyErr_Occurred()))) {
        bad = 1;
    }
    if (!bad && (fd < 0 || fd > INT_MAX || events < 0 || events > SHRT_MAX || timeout > INT_MAX)) {
        PyErr_SetString(PyExc_ValueError, "wait_then_acquire(): an argument is out of range");
        bad = 1;
    }
    Py_BEGIN_ALLOW_THREADS
    if (!bad) {
        target.fd = (int)fd;
        target.events = (short)events;
        target.revents = 0;
        ready = poll(&target, 1, timeout < 0 ? -1 : (int)timeout);
        error = errno;
    }
    take(self);
    Py_END_ALLOW_THREADS
    self->locked = 1;
    if (bad) {
        return NULL;
    }
    if (ready < 0) {
        if (error == EINTR) {
            /* A signal: its handler runs now; the caller looks at its
             * deadline and waits again. */
            if (PyErr_CheckSignals() < 0) {
                return NULL;
            }
            Py_RETURN_FALSE;
        }
        errno = error;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    return PyBool_FromLong(ready > 0);
}

static PyMethodDef turn_methods[] = {
    {"acquire", (PyCFunction)turn_acquire, METH_NOARGS,
     "Take the turn, waiting (without the GIL) while another thread has it."},
    {"release", (PyCFunction)turn_release, METH_NOARGS, "Give the turn back."},
    {"locked", (PyCFunction)turn_locked, METH_NOARGS, "True while a thread has the turn."},
    {"wait_then_acquire", (PyCFunction)(void (*)(void))turn_wait_then_acquire, METH_FASTCALL,
     "poll() one descriptor, then take the turn, without the GIL in between."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject TurnType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "syncws.threaded.runtime._turn.Turn",
    .tp_doc = "A lock whose wait for a socket and for the lock needs no GIL in between.",
    .tp_basicsize = sizeof(TurnObject),
    .tp_itemsize = 0,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = turn_new,
    .tp_dealloc = (destructor)turn_dealloc,
    .tp_methods = turn_methods,
};

static struct PyModuleDef turn_module = {
    PyModuleDef_HEAD_INIT, "syncws.threaded.runtime._turn",
    "C accelerator for the read turn; optional.", -1, NULL,
};

PyMODINIT_FUNC
PyInit__turn(void)
{
    PyObject *module;

    if (PyType_Ready(&TurnType) < 0) {
        return NULL;
    }
    module = PyModule_Create(&turn_module);
    if (module == NULL) {
        return NULL;
    }
    if (PyModule_AddObjectRef(module, "Turn", (PyObject *)&TurnType) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
