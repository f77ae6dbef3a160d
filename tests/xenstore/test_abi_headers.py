"""xen_core/abi/xs_wire.py against Debian's libxen-dev <xen/io/xs_wire.h>."""

import os
import shutil
import subprocess

import pytest

from xen_core.abi import xs_wire as w

HEADER = "/usr/include/xen/io/xs_wire.h"

TYPES = ["XS_CONTROL", "XS_DIRECTORY", "XS_READ", "XS_GET_PERMS", "XS_WATCH",
         "XS_UNWATCH", "XS_TRANSACTION_START", "XS_TRANSACTION_END", "XS_INTRODUCE",
         "XS_RELEASE", "XS_GET_DOMAIN_PATH", "XS_WRITE", "XS_MKDIR", "XS_RM",
         "XS_SET_PERMS", "XS_WATCH_EVENT", "XS_ERROR", "XS_IS_DOMAIN_INTRODUCED",
         "XS_RESUME", "XS_SET_TARGET", "XS_RESET_WATCHES", "XS_DIRECTORY_PART",
         "XS_TYPE_COUNT", "XS_INVALID", "XS_WATCH_PATH", "XS_WATCH_TOKEN",
         "XENSTORE_RING_SIZE", "XENSTORE_PAYLOAD_MAX", "XENSTORE_ABS_PATH_MAX",
         "XENSTORE_REL_PATH_MAX", "XENSTORE_SERVER_FEATURE_RECONNECTION",
         "XENSTORE_SERVER_FEATURE_ERROR", "XENSTORE_CONNECTED", "XENSTORE_RECONNECT",
         "XENSTORE_ERROR_NONE", "XENSTORE_ERROR_COMM", "XENSTORE_ERROR_RINGIDX",
         "XENSTORE_ERROR_PROTO"]
FIELDS = {"req": "XS_RING_REQ_OFF", "rsp": "XS_RING_RSP_OFF",
          "req_cons": "XS_RING_REQ_CONS", "req_prod": "XS_RING_REQ_PROD",
          "rsp_cons": "XS_RING_RSP_CONS", "rsp_prod": "XS_RING_RSP_PROD",
          "server_features": "XS_RING_SERVER_FEATURES",
          "connection": "XS_RING_CONNECTION", "error": "XS_RING_ERROR"}


@pytest.fixture(scope="module")
def header_values(tmp_path_factory):
    if not os.path.exists(HEADER) or not shutil.which("gcc"):
        pytest.skip("libxen-dev headers or gcc not installed (make deps)")
    d = tmp_path_factory.mktemp("xs_wire")
    lines = ["#include <errno.h>", "#include <stdio.h>", "#include <stddef.h>",
             "#include <stdint.h>", "#include <xen/io/xs_wire.h>", "int main(void) {"]
    for name in TYPES:
        lines.append(f'printf("{name} %lu\\n", (unsigned long)({name}));')
    for field in FIELDS:
        lines.append(f'printf("off_{field} %lu\\n", (unsigned long)'
                     f'offsetof(struct xenstore_domain_interface, {field}));')
    lines.append('printf("sockmsg %lu\\n", (unsigned long)sizeof(struct xsd_sockmsg));')
    lines.append('for (unsigned i = 0; i < sizeof(xsd_errors)/sizeof(xsd_errors[0]); i++)'
                 ' printf("err%u %s\\n", i, xsd_errors[i].errstring);')
    lines.append("return 0; }")
    src = d / "probe.c"
    src.write_text("\n".join(lines))
    subprocess.run(["gcc", "-o", str(d / "probe"), str(src)], check=True)
    out = subprocess.run([str(d / "probe")], check=True, capture_output=True, text=True)
    return dict(line.split(" ", 1) for line in out.stdout.splitlines())


def test_constants_match_header(header_values):
    for name in TYPES:
        assert int(header_values[name]) == getattr(w, name), name


def test_ring_layout_matches_header(header_values):
    for field, ours in FIELDS.items():
        assert int(header_values[f"off_{field}"]) == getattr(w, ours), field
    assert int(header_values["sockmsg"]) == w.XSD_SOCKMSG_SIZE


def test_error_strings_match_header(header_values):
    theirs = [header_values[f"err{i}"] for i in range(len(w.XSD_ERRORS))]
    assert tuple(theirs) == w.XSD_ERRORS
    assert f"err{len(w.XSD_ERRORS)}" not in header_values
