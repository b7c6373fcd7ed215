"""The OpenFeature Python SDK with its OFREP provider, reading a running Vane.

Usage: python sdk_conformance.py '<json: {"base": ..., "codes": {...}}>'
Run by tests/it/ofrep_sdk.rs, which makes the configs first. Prints one line per
check and exits 1 at the first that fails.
"""

import json
import sys

import requests
from openfeature import api
from openfeature.contrib.provider.ofrep import OFREPProvider
from openfeature.evaluation_context import EvaluationContext

setup = json.loads(sys.argv[1])
base = setup["base"]
codes = setup["codes"]

api.set_provider(OFREPProvider(base, timeout=10))
client = api.get_client()


def name(value):
    """An enum member's value, or the value itself."""
    return getattr(value, "value", value)


def check(what, condition, details):
    if not condition:
        print(f"FAILED {what}: {details}")
        sys.exit(1)
    print(f"ok {what}")


def context(key=None, **attributes):
    return EvaluationContext(targeting_key=key, attributes=attributes)


d = client.get_boolean_details("sdk-flag", False, context("device-1"))
check("boolean", (d.value, name(d.reason), d.variant) == (True, "STATIC", codes["sdk-flag"]), d)
check("metadata carries the revision", d.flag_metadata.get("revision") == 2, d.flag_metadata)

d = client.get_string_details("sdk-text", "fallback", context("device-1"))
check("string", (d.value, d.error_code) == ("hello", None), d)

d = client.get_float_details("sdk-number", 0.0, context("device-1"))
check("float", d.value == 2.5, d)

d = client.get_integer_details("sdk-int", 0, context("device-1"))
check("integer", d.value == 42, d)

d = client.get_object_details("sdk-object", {}, context("device-1", city="Oslo"))
check("object with a parameter", d.value == {"city": "Oslo", "n": 4}, d)

d = client.get_string_details("sdk-ruled", "fallback", context("device-1", platform="ios", version=5))
check("rules that match", (d.value, name(d.reason)) == ("new", "TARGETING_MATCH"), d)

# The same device lands in the same gray bucket as through the original route.
sides = set()
for i in range(40):
    device = f"device-{i}"
    d = client.get_integer_details("sdk-gray", -1, context(device))
    original = requests.post(f"{base}/config/sdk-gray", json={"meta": {"device_id": device}}, timeout=10).json()
    check(f"gray bucket of {device}", (d.variant, name(d.reason)) == (original["data"]["code_id"], "SPLIT"), (d, original))
    sides.add(d.variant)
check("both sides of a 50 % gray", len(sides) == 2, sides)

# Refusals: the caller's default, with the right error code.
d = client.get_boolean_details("sdk-missing", True, context("device-1"))
check("unknown flag", (d.value, name(d.error_code)) == (True, "FLAG_NOT_FOUND"), d)

d = client.get_object_details("sdk-object", {"default": True}, context("device-1", city=7))
check("bad context", (d.value, name(d.error_code)) == ({"default": True}, "INVALID_CONTEXT"), d)
check("the error names the parameter", "city" in (d.error_message or ""), d)

d = client.get_integer_details("sdk-gray", -1, context(None))
check("gray without a targeting key", (d.value, name(d.error_code)) == (-1, "TARGETING_KEY_MISSING"), d)

d = client.get_string_details("sdk-off", "fallback", context("device-1"))
check("inactive config", (d.value, name(d.reason), d.error_code) == ("fallback", "DISABLED", None), d)

d = client.get_string_details("sdk-failing", "fallback", context("device-1"))
check("failing script", (d.value, name(d.error_code)) == ("fallback", "GENERAL"), d)

d = client.get_boolean_details("sdk-text", False, context("device-1"))
check("wrong type", (d.value, name(d.error_code)) == (False, "TYPE_MISMATCH"), d)

print("conformance: every check passed")
