"""Evaluate a ValidatingAdmissionPolicy the way kube-apiserver does, with a Python CEL evaluator.

Why: the policy's CEL is the security boundary of the agent, and a CEL typo or an
unguarded field access is only found at admission time. This harness runs the
shipped YAML with ``cel-python`` (``celpy``, a pure-Python implementation of
the CEL spec, including ``has()``, map ``in``, ``all``/``exists``/``filter``
and CEL's commutative ``&&``/``||`` error semantics) and reproduces the parts
of the API server's procedure the outcome depends on (k8s.io/apiserver
``admission/plugin/policy/validating`` and ``admission/plugin/cel``):

1. ``matchConstraints.resourceRules``: group, version, operation, resource,
   ``resource/*`` for subresources; a request outside them is not evaluated;
2. ``matchConditions`` in order: any ``false`` skips the policy; an error
   applies ``failurePolicy`` (``Fail``: deny);
3. ``variables`` in order, each seeing the earlier ones as ``variables.<name>``
   (the server evaluates them lazily; evaluating them eagerly is stricter:
   this harness reports any variable that errors);
4. every ``validation``: ``false`` denies with ``messageExpression`` (falling
   back to ``message``), an error denies under ``failurePolicy: Fail``.

``request`` is built as the API server builds it (``CreateAdmissionRequest``
then ``runtime.DefaultUnstructuredConverter.ToUnstructured``), so every
``omitempty`` field that is empty is *absent*, as it is on a real server:
``subResource``, ``namespace``, ``name`` and ``userInfo.extra`` for instance.
Only the policy's own CEL needs no Kubernetes extension library: it is
restricted to standard CEL on purpose, so this evaluator covers all of it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import celpy

__all__ = ["Decision", "Policy", "admission_request"]


def admission_request(*, operation: str, resource: str, username: str, subresource: str = "",
                      name: str = "", namespace: str = "", extra: dict[str, list[str]] | None = None,
                      groups: list[str] | None = None, kind: str = "", dry_run: bool = False) -> dict[str, Any]:
    """An AdmissionRequest as the CEL ``request`` variable sees it (absent where the Go struct says omitempty)."""
    gvk = {"group": "", "version": "v1", "kind": kind or {"nodes": "Node", "configmaps": "ConfigMap"}.get(resource, "")}
    gvr = {"group": "", "version": "v1", "resource": resource}
    user: dict[str, Any] = {}
    if username:
        user["username"] = username
    if groups:
        user["groups"] = list(groups)
    if extra:
        user["extra"] = {k: list(v) for k, v in extra.items()}
    req: dict[str, Any] = {"uid": "", "kind": gvk, "resource": gvr, "requestKind": dict(gvk),
                           "requestResource": dict(gvr), "operation": operation, "userInfo": user, "dryRun": dry_run}
    if subresource:
        req["subResource"] = subresource
        req["requestSubResource"] = subresource
    if name:
        req["name"] = name
    if namespace:
        req["namespace"] = namespace
    return req


@dataclass(frozen=True)
class Decision:
    """The policy's verdict on one request."""

    matched: bool  # False: outside matchConstraints or a matchCondition was false (the policy does not apply)
    allowed: bool
    failed: tuple[str, ...] = ()  # names of the validations that denied (see Policy.validation_names)
    messages: tuple[str, ...] = ()
    errors: tuple[str, ...] = field(default=())  # any CEL evaluation error (never expected from our policy)


class Policy:
    """A compiled ValidatingAdmissionPolicy (dict from the YAML)."""

    def __init__(self, doc: dict[str, Any], validation_names: list[str]) -> None:
        spec = doc["spec"]
        assert len(validation_names) == len(spec["validations"]), "name every validation"
        self.spec = spec
        self.names = validation_names
        self.env = celpy.Environment()
        self._programs: dict[str, Any] = {}

    def _run(self, expr: str, activation: dict[str, Any]) -> Any:
        prog = self._programs.get(expr)
        if prog is None:
            prog = self._programs[expr] = self.env.program(self.env.compile(expr))
        result = prog.evaluate(activation)
        if isinstance(result, celpy.CELEvalError):
            raise result
        return result

    def _matches_rules(self, req: dict[str, Any]) -> bool:
        resource = req["resource"]["resource"] + ("/" + req["subResource"] if "subResource" in req else "")
        for rule in self.spec["matchConstraints"]["resourceRules"]:
            ok = (req["resource"]["group"] in rule["apiGroups"] or "*" in rule["apiGroups"]) and (
                req["resource"]["version"] in rule["apiVersions"] or "*" in rule["apiVersions"]) and (
                req["operation"] in rule["operations"] or "*" in rule["operations"])
            names = rule["resources"]
            base = req["resource"]["resource"]
            if ok and (resource in names or "*" in names or ("subResource" in req and f"{base}/*" in names)):
                return True
        return False

    def evaluate(self, request: dict[str, Any], obj: dict[str, Any] | None, old: dict[str, Any] | None) -> Decision:
        if not self._matches_rules(request):
            return Decision(False, True)
        fail_closed = self.spec.get("failurePolicy", "Fail") == "Fail"
        base = {"request": celpy.json_to_cel(request), "object": celpy.json_to_cel(obj),
                "oldObject": celpy.json_to_cel(old)}
        for cond in self.spec.get("matchConditions", []):
            try:
                if not bool(self._run(cond["expression"], base)):
                    return Decision(False, True)
            except Exception as err:
                return Decision(True, not fail_closed, ("matchCondition:" + cond["name"],), (), (f"{err}",))
        variables: dict[str, Any] = {}
        errors: list[str] = []
        for var in self.spec.get("variables", []):
            try:
                variables[var["name"]] = self._run(var["expression"], {**base, "variables": celpy.json_to_cel({})
                                                                      if not variables else _cel_map(variables)})
            except Exception as err:
                errors.append(f"variables.{var['name']}: {err}")
        act = {**base, "variables": _cel_map(variables)}
        failed, messages = [], []
        for name, rule in zip(self.names, self.spec["validations"], strict=True):
            try:
                ok = self._run(rule["expression"], act)
                if not isinstance(ok, celpy.celtypes.BoolType):
                    raise TypeError(f"validation {name} returned {type(ok).__name__}, not bool")
            except Exception as err:
                errors.append(f"{name}: {err}")
                if fail_closed:
                    failed.append(name)
                    messages.append(rule.get("message", ""))
                continue
            if not ok:
                failed.append(name)
                messages.append(self._message(rule, act, errors))
        return Decision(True, not failed, tuple(failed), tuple(messages), tuple(errors))

    def _message(self, rule: dict[str, Any], act: dict[str, Any], errors: list[str]) -> str:
        if "messageExpression" in rule:
            try:
                text = self._run(rule["messageExpression"], act)
                if isinstance(text, str):
                    return str(text)
                errors.append(f"messageExpression returned {type(text).__name__}")
            except Exception as err:
                errors.append(f"messageExpression: {err}")
        return str(rule.get("message", ""))


def _cel_map(values: dict[str, Any]) -> Any:
    """``variables`` as a CEL map whose values are already CEL values."""
    return celpy.celtypes.MapType({celpy.celtypes.StringType(k): v for k, v in values.items()})
