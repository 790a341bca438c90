#!/usr/bin/env python3
"""Renders deploy/k8s/ as `kubectl kustomize` does, and checks it against the repository.

validate.sh runs it; nothing else needs it (`kubectl apply -k` renders the kustomization
itself). No kustomize binary is needed: this is the part of kustomize the kustomization
uses (resources, configMapGenerator with files, secretGenerator with envs,
generatorOptions labels, images, namespace), with kustomize's name hashes, and it refuses
anything else the kustomization might start using rather than ignore it.

    render.py render DIR OUT    render DIR/kustomization.yaml into OUT, with
                                secrets.env.example standing in for secrets.env, and check it
    render.py compare A B       A and B hold the same objects (say, OUT and what
                                `kubectl kustomize` made of the same folder)

Checks, beyond rendering (each failure says what to change):
  - every manifest file of the folder is in `resources`, and every entry there exists;
  - platform.toml is the repository's ../../platform.toml, byte for byte;
  - terminationGracePeriodSeconds covers preStop + [host.connections]
    shutdown_drain_seconds + a margin;
  - the Secret's keys (secrets.env.example) are the keys the Deployment reads, and a
    secrets.env, if you wrote one, has the same keys, none empty;
  - every service of platform.toml has its container port and its Service, the admin port
    is PLATFORM_ADMIN_BIND's, and the probes ask the admin port;
  - Services, the PodDisruptionBudget and the HorizontalPodAutoscaler select the Deployment.
"""

import base64
import copy
import difflib
import hashlib
import json
import os
import re
import sys

try:
    import tomllib
except ImportError:  # Python < 3.11
    sys.exit("render.py needs Python 3.11 or later (tomllib)")

import yaml  # PyYAML, a dependency of kubernetes-validate

# The grace period must exceed preStop + drain by at least this much: the process still has
# to close its pools and flush its traces once the drain ends.
MIN_MARGIN_SECONDS = 5
# [host.connections] shutdown_drain_seconds when platform.toml does not set it
# (host/src/config/mod.rs).
DEFAULT_DRAIN_SECONDS = 10

SUPPORTED_KEYS = {
    "apiVersion", "kind", "namespace", "resources", "configMapGenerator",
    "secretGenerator", "generatorOptions", "images",
}

errors = []


def error(message):
    errors.append(message)


def load_yaml_documents(path):
    with open(path, encoding="utf-8") as f:
        return [doc for doc in yaml.safe_load_all(f) if doc is not None]


# --- kustomize's name suffix (api/hasher/hasher.go) -------------------------------------

def go_json(value):
    """json.Marshal's bytes: sorted keys, no spaces, <, >, & and U+2028/9 escaped."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                          ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(char, escaped)
    return text.encode("utf-8")


def name_hash(obj):
    # kustomize looks the name up as one field called "metadata/name", which no object
    # has, so every hash is of an empty name: the data (and a Secret's type) decide it.
    if obj["kind"] == "ConfigMap":
        encoded = {"kind": "ConfigMap", "name": "", "data": obj.get("data", {})}
        if obj.get("binaryData"):
            encoded["binaryData"] = obj["binaryData"]
    else:
        encoded = {"kind": "Secret", "type": obj.get("type", ""), "name": "",
                   "data": obj.get("data", {})}
    digest = hashlib.sha256(go_json(encoded)).hexdigest()[:10]
    return digest.translate(str.maketrans("013ae", "ghkmt"))


# --- generators ---------------------------------------------------------------------------

ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")


def parse_env_file(path):
    """kustomize's env file: KEY=value lines, `#` comments, the value taken as it is."""
    pairs = {}
    with open(path, "rb") as f:
        raw = f.read()
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    for number, line in enumerate(raw.decode("utf-8").split("\n"), start=1):
        line = line.lstrip()
        if not line or line.startswith("#"):
            continue
        if "=" not in line:
            error(f"{path}:{number}: `{line}` is not KEY=value (render.py reads no value "
                  "from the environment)")
            continue
        key, value = line.split("=", 1)
        if not ENV_NAME.match(key):
            error(f"{path}:{number}: `{key}` is not a valid key")
        if key in pairs:
            error(f"{path}:{number}: `{key}` is set twice")
        pairs[key] = value
    return pairs


def generated_metadata(generator, options):
    unsupported = set(generator) - {"name", "files", "envs"}
    if unsupported:
        error(f"generator {generator.get('name')}: render.py does not implement "
              f"{sorted(unsupported)}; extend it")
    metadata = {"name": generator["name"]}
    if options.get("labels"):
        metadata["labels"] = dict(options["labels"])
    return metadata


def config_map(directory, generator, options):
    obj = {"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": generated_metadata(generator, options), "data": {}}
    for source in generator.get("files", []):
        key, _, path = source.rpartition("=")
        key = key or os.path.basename(path)
        with open(os.path.join(directory, path), "rb") as f:
            content = f.read()
        try:
            obj["data"][key] = content.decode("utf-8")
        except UnicodeDecodeError:
            obj.setdefault("binaryData", {})[key] = base64.b64encode(content).decode()
    if generator.get("envs"):
        error(f"configMapGenerator {generator['name']}: envs are not implemented; extend render.py")
    return obj


def kustomize_base64(value):
    """kustomize's encodeBase64: lines of 70 characters, each ending in a newline once there
    are 70 or more (the API server's decoder skips them); the name hash is of this text."""
    encoded = base64.b64encode(value).decode()
    if len(encoded) < 70:
        return encoded
    return "".join(encoded[i:i + 70] + "\n" for i in range(0, len(encoded), 70))


def secret(directory, generator, options, env_files):
    obj = {"apiVersion": "v1", "kind": "Secret",
           "metadata": generated_metadata(generator, options), "type": "Opaque", "data": {}}
    for path in generator.get("envs", []):
        real = env_files.get(path, path)
        for key, value in parse_env_file(os.path.join(directory, real)).items():
            obj["data"][key] = kustomize_base64(value.encode("utf-8"))
    if generator.get("files"):
        error(f"secretGenerator {generator['name']}: files are not implemented; extend render.py")
    return obj


# --- transformers -------------------------------------------------------------------------

def pod_specs(obj):
    spec = obj.get("spec", {})
    if obj["kind"] == "Pod":
        yield spec
    elif obj["kind"] == "CronJob":
        yield spec["jobTemplate"]["spec"]["template"]["spec"]
    elif "template" in spec:
        yield spec["template"]["spec"]


def set_images(objects, images):
    for image in images:
        unsupported = set(image) - {"name", "newName", "newTag", "digest"}
        if unsupported:
            error(f"images: render.py does not implement {sorted(unsupported)}")
    for obj in objects:
        for spec in pod_specs(obj):
            for container in spec.get("containers", []) + spec.get("initContainers", []):
                current = container["image"]
                name = re.split(r"[@]", current)[0]
                if ":" in name.rsplit("/", 1)[-1]:
                    name = name.rsplit(":", 1)[0]
                for image in images:
                    if image["name"] != name:
                        continue
                    new = image.get("newName", name)
                    if image.get("digest"):
                        new += "@" + image["digest"]
                    elif image.get("newTag"):
                        new += ":" + str(image["newTag"])
                    container["image"] = new


def rename_references(objects, renamed):
    """Points the pod specs at the generated ConfigMaps' and Secrets' hashed names."""
    def refer(kind, holder, field):
        name = holder.get(field)
        if (kind, name) in renamed:
            holder[field] = renamed[(kind, name)]
        else:
            error(f"a pod refers to {kind} `{name}`, which the kustomization does not generate")

    for obj in objects:
        for spec in pod_specs(obj):
            for volume in spec.get("volumes", []):
                if "configMap" in volume:
                    refer("ConfigMap", volume["configMap"], "name")
                if "secret" in volume:
                    refer("Secret", volume["secret"], "secretName")
            for container in spec.get("containers", []) + spec.get("initContainers", []):
                for var in container.get("env", []):
                    source = var.get("valueFrom", {})
                    if "configMapKeyRef" in source:
                        refer("ConfigMap", source["configMapKeyRef"], "name")
                    if "secretKeyRef" in source:
                        refer("Secret", source["secretKeyRef"], "name")
                for source in container.get("envFrom", []):
                    if "configMapRef" in source:
                        refer("ConfigMap", source["configMapRef"], "name")
                    if "secretRef" in source:
                        refer("Secret", source["secretRef"], "name")


# kustomize's default ("legacy") output order.
ORDER_FIRST = ["Namespace", "ResourceQuota", "StorageClass", "CustomResourceDefinition",
               "ServiceAccount", "PodSecurityPolicy", "Role", "ClusterRole", "RoleBinding",
               "ClusterRoleBinding", "ConfigMap", "Secret", "Endpoints", "Service",
               "LimitRange", "PriorityClass", "PersistentVolume", "PersistentVolumeClaim",
               "Deployment", "StatefulSet", "CronJob", "PodDisruptionBudget"]


def order_key(obj):
    kind = obj["kind"]
    rank = ORDER_FIRST.index(kind) if kind in ORDER_FIRST else len(ORDER_FIRST)
    return (rank, kind, obj["metadata"].get("namespace", ""), obj["metadata"]["name"])


def render(directory, env_files):
    kustomization = load_yaml_documents(os.path.join(directory, "kustomization.yaml"))[0]
    unsupported = set(kustomization) - SUPPORTED_KEYS
    if unsupported:
        error(f"kustomization.yaml uses {sorted(unsupported)}, which render.py does not "
              "implement: extend it, or validate.sh would check something else than "
              "`kubectl apply -k` applies")
    options = kustomization.get("generatorOptions", {}) or {}
    if set(options) - {"labels"}:
        error(f"generatorOptions: render.py implements only labels, not "
              f"{sorted(set(options) - {'labels'})}")

    objects = []
    for resource in kustomization.get("resources", []):
        path = os.path.join(directory, resource)
        if not os.path.isfile(path):
            error(f"kustomization.yaml lists `{resource}`, which does not exist "
                  "(a folder or a URL is not implemented by render.py)")
            continue
        objects.extend(load_yaml_documents(path))

    renamed = {}
    generated = []
    for generator in kustomization.get("configMapGenerator", []) or []:
        generated.append(config_map(directory, generator, options))
    for generator in kustomization.get("secretGenerator", []) or []:
        generated.append(secret(directory, generator, options, env_files))
    for obj in generated:
        name = obj["metadata"]["name"]
        obj["metadata"]["name"] = f"{name}-{name_hash(obj)}"
        renamed[(obj["kind"], name)] = obj["metadata"]["name"]

    rename_references(objects, renamed)
    set_images(objects, kustomization.get("images", []) or [])
    objects = generated + objects
    if kustomization.get("namespace"):
        for obj in objects:
            obj["metadata"]["namespace"] = kustomization["namespace"]
    return kustomization, sorted(objects, key=order_key)


# --- checks against the repository ---------------------------------------------------------

def check_resources_listed(directory, kustomization):
    listed = set(kustomization.get("resources", []))
    for name in sorted(os.listdir(directory)):
        if name.endswith((".yaml", ".yml")) and name != "kustomization.yaml" \
                and name not in listed:
            error(f"{name} is not in kustomization.yaml's resources: `kubectl apply -k` "
                  "would leave it out")


def check_platform_toml(directory):
    ours = os.path.join(directory, "platform.toml")
    repository = os.path.normpath(os.path.join(directory, "..", "..", "platform.toml"))
    with open(ours, "rb") as a, open(repository, "rb") as b:
        if a.read() != b.read():
            error(f"{ours} differs from {repository}: the ConfigMap would not run the "
                  f"repository's configuration; copy it: cp {repository} {ours}")
    with open(ours, "rb") as f:
        return tomllib.load(f)


def one(objects, kind):
    found = [obj for obj in objects if obj["kind"] == kind]
    if len(found) != 1:
        error(f"expected one {kind}, found {len(found)}")
        return None
    return found[0]


def env_value(container, name):
    for var in container.get("env", []):
        if var["name"] == name:
            return var.get("value")
    return None


def check_deployment(objects, config, directory):
    deployment = one(objects, "Deployment")
    if deployment is None:
        return
    pod = deployment["spec"]["template"]
    spec = pod["spec"]
    container = spec["containers"][0]
    labels = pod["metadata"].get("labels", {})

    # Shutdown: preStop, then SIGTERM and the host's drain, within the grace period.
    drain = config.get("host", {}).get("connections", {}).get(
        "shutdown_drain_seconds", DEFAULT_DRAIN_SECONDS)
    command = container.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command")
    if not (command and len(command) == 2 and command[0] == "/bin/sleep"
            and command[1].isdigit()):
        error(f"the preStop hook should be [\"/bin/sleep\", \"<seconds>\"], not {command}")
        pre_stop = 0
    else:
        pre_stop = int(command[1])
    grace = spec.get("terminationGracePeriodSeconds", 30)
    if grace < pre_stop + drain + MIN_MARGIN_SECONDS:
        error(f"terminationGracePeriodSeconds is {grace}: it must be at least preStop "
              f"({pre_stop}) + shutdown_drain_seconds ({drain}) + {MIN_MARGIN_SECONDS} = "
              f"{pre_stop + drain + MIN_MARGIN_SECONDS}, or the kubelet kills the host in "
              "the middle of its drain")

    # Ports: each service of platform.toml, and the admin API.
    ports = {port.get("name"): port["containerPort"] for port in container.get("ports", [])}
    services = {obj["metadata"]["name"]: obj for obj in objects if obj["kind"] == "Service"}
    admin_bind = env_value(container, "PLATFORM_ADMIN_BIND") or config.get("admin", {}).get("bind", "")
    wanted = {name: service["port"] for name, service in config.get("services", {}).items()}
    wanted["admin"] = int(admin_bind.rsplit(":", 1)[-1])
    for name, port in sorted(wanted.items()):
        if ports.get(name) != port:
            error(f"the container should have a port named `{name}`, {port} "
                  f"(platform.toml / PLATFORM_ADMIN_BIND), not {ports.get(name)}")
        service = services.get(f"platform-{name}")
        if service is None:
            error(f"no Service platform-{name} for port {port}")
            continue
        targets = [p.get("targetPort") for p in service["spec"]["ports"]]
        if targets not in ([name], [port]):
            error(f"Service platform-{name} should target port `{name}`, not {targets}")
    for name in sorted(set(services) - {f"platform-{n}" for n in wanted}):
        error(f"Service {name} belongs to no port of platform.toml")
    if services.get("platform-admin", {}).get("spec", {}).get("type", "ClusterIP") != "ClusterIP":
        error("Service platform-admin must stay ClusterIP: the admin API is never exposed")
    for probe, path in (("startupProbe", "/health"), ("livenessProbe", "/health"),
                        ("readinessProbe", "/ready")):
        get = container.get(probe, {}).get("httpGet", {})
        if get.get("path") != path or get.get("port") not in ("admin", wanted["admin"]):
            error(f"{probe} should ask GET {path} on the admin port, not {get}")

    # Selectors.
    def selects(selector, what):
        if not selector or any(labels.get(k) != v for k, v in selector.items()):
            error(f"{what}'s selector {selector} does not select the Deployment's pods {labels}")
    selects(deployment["spec"]["selector"].get("matchLabels"), "the Deployment")
    for name, service in services.items():
        selects(service["spec"].get("selector"), f"Service {name}")
    pdb = one(objects, "PodDisruptionBudget")
    if pdb:
        selects(pdb["spec"]["selector"].get("matchLabels"), "the PodDisruptionBudget")
    hpa = one(objects, "HorizontalPodAutoscaler")
    if hpa:
        target = hpa["spec"]["scaleTargetRef"]
        if (target.get("kind"), target.get("name")) != ("Deployment", deployment["metadata"]["name"]):
            error(f"the HorizontalPodAutoscaler scales {target}, not the Deployment")
        if not container.get("resources", {}).get("requests", {}).get("cpu"):
            error("the container needs a CPU request: the HPA measures utilisation against it")

    # The Secret's keys are exactly those the Deployment reads.
    read = {var["valueFrom"]["secretKeyRef"]["key"] for var in container.get("env", [])
            if "secretKeyRef" in var.get("valueFrom", {})}
    example = parse_env_file(os.path.join(directory, "secrets.env.example"))
    if set(example) != read:
        error(f"secrets.env.example has {sorted(example)}, the Deployment reads "
              f"{sorted(read)}: the two must name the same keys")
    mine = os.path.join(directory, "secrets.env")
    if os.path.exists(mine):
        values = parse_env_file(mine)
        missing, extra = set(example) - set(values), set(values) - set(example)
        if missing or extra:
            error(f"secrets.env lacks {sorted(missing)} and has {sorted(extra)} beyond "
                  "secrets.env.example's keys")
        for key, value in values.items():
            if not value.strip():
                error(f"secrets.env: {key} is empty (an empty URL would make each pod use "
                      "an embedded backend of its own)")
            elif value.strip() == "change-me" or ":change-me@" in value:
                print(f"render.py: warning: secrets.env: {key} still holds change-me",
                      file=sys.stderr)


# --- compare --------------------------------------------------------------------------------

def index(objects):
    return {(o["apiVersion"], o["kind"], o["metadata"].get("namespace", ""),
             o["metadata"]["name"]): o for o in objects}


def compare(a_path, b_path):
    a, b = index(load_yaml_documents(a_path)), index(load_yaml_documents(b_path))
    for key in sorted(set(a) | set(b)):
        if key not in a or key not in b:
            error(f"{'/'.join(key[1:])} is only in {a_path if key in a else b_path}")
        elif a[key] != b[key]:
            lines = [yaml.safe_dump(o, sort_keys=True).splitlines() for o in (a[key], b[key])]
            diff = difflib.unified_diff(*lines, a_path, b_path, lineterm="")
            error(f"{'/'.join(key[1:])} differs:\n" + "\n".join(diff))


# --- output -----------------------------------------------------------------------------

class Dumper(yaml.SafeDumper):
    pass


def represent_str(dumper, value):
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


Dumper.add_representer(str, represent_str)


def main(argv):
    if len(argv) == 4 and argv[1] == "render":
        directory, out = argv[2], argv[3]
        kustomization, objects = render(directory, {"secrets.env": "secrets.env.example"})
        check_resources_listed(directory, kustomization)
        config = check_platform_toml(directory)
        check_deployment(copy.deepcopy(objects), config, directory)
        with open(out, "w", encoding="utf-8") as f:
            yaml.dump_all(objects, f, Dumper=Dumper, sort_keys=False, default_flow_style=False)
        summary = ", ".join(f"{o['kind']}/{o['metadata']['name']}" for o in objects)
        print(f"render.py: {len(objects)} objects: {summary}")
    elif len(argv) == 4 and argv[1] == "compare":
        compare(argv[2], argv[3])
    else:
        sys.exit(__doc__)
    for message in errors:
        print(f"render.py: error: {message}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
