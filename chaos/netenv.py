"""Where the nodes live on the network, and how it is broken.

NetnsNet: each node in its own network namespace (`<prefix>n<i>`), joined by
a veth pair to a bridge in the root namespace (`<prefix>br`, 10.77.X.1/24,
the harness's own address); node i is 10.77.X.(10+i). Partitions and packet
loss are nftables rules in the node's namespace (table inet sbchaos) that
match only other nodes' addresses, so the harness (on the bridge address)
can always reach every node. Deleting the namespace removes its rules.

LoopbackNet: the fallback when namespaces or root are not available: node i
on 127.0.X.(10+i) with free ports; no partitions, no packet loss.
"""

import os
import shutil
import socket
import subprocess

TABLE = "sbchaos"


def run(cmd, check=True, input=None, timeout=30):
    p = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: exit {p.returncode}: {p.stderr.strip() or p.stdout.strip()}")
    return p


def free_port(ip):
    """A port free for both TCP and UDP on ip."""
    while True:
        t = socket.socket()
        try:
            t.bind((ip, 0))
            port = t.getsockname()[1]
            u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                u.bind((ip, port))
                return port
            except OSError:
                continue
            finally:
                u.close()
        finally:
            t.close()


class LoopbackNet:
    mode = "loopback"
    can_partition = False
    can_loss = False

    def __init__(self, n, log):
        self.n = n
        self.log = log
        used = run(["ip", "-o", "addr"], check=False).stdout if shutil.which("ip") else ""
        third = (os.getpid() % 200) + 20
        while f"127.0.{third}." in used:
            third = third % 250 + 1
        self.ips = {i: f"127.0.{third}.{10 + i}" for i in range(1, n + 1)}
        self.harness_ip = "127.0.0.1"

    def ports(self, i):
        ip = self.ips[i]
        return {k: free_port(ip) for k in ("dns", "api", "peer", "http", "proxy")}

    def ns(self, i):
        return None

    def exec_prefix(self, i):
        return []

    def heal(self):
        pass

    def cleanup(self):
        pass


class NetnsNet:
    mode = "netns"

    def __init__(self, n, log, nft_available):
        self.n = n
        self.log = log
        self.prefix = f"sbc{os.getpid()}"
        self.created_ns = []
        self.created_links = []
        self.can_partition = False
        self.can_loss = False
        used = run(["ip", "-o", "addr"]).stdout + run(["ip", "route"]).stdout
        third = (os.getpid() % 200) + 20
        while f"10.77.{third}." in used:
            third = third % 250 + 1
        self.subnet = f"10.77.{third}"
        self.harness_ip = f"{self.subnet}.1"
        self.ips = {i: f"{self.subnet}.{10 + i}" for i in range(1, n + 1)}
        self.bridge = f"{self.prefix}br"
        try:
            self._setup()
        except Exception:
            self.cleanup()
            raise
        if nft_available:
            try:
                for i in self.ips:
                    self._nft(i, f"add table inet {TABLE}\n"
                                 f"add chain inet {TABLE} input {{ type filter hook input priority 0; policy accept; }}\n"
                                 f"add chain inet {TABLE} output {{ type filter hook output priority 0; policy accept; }}\n")
                self.can_partition = True
                self.can_loss = True
            except Exception as e:
                self.log(f"SKIP partitions and packet loss: nftables does not work in the namespaces: {e}")

    def _setup(self):
        run(["ip", "link", "add", self.bridge, "type", "bridge"])
        self.created_links.append(self.bridge)
        run(["ip", "addr", "add", f"{self.harness_ip}/24", "dev", self.bridge])
        run(["ip", "link", "set", self.bridge, "up"])
        for i, ip in self.ips.items():
            ns = self.ns(i)
            run(["ip", "netns", "add", ns])
            self.created_ns.append(ns)
            host, peer = f"{self.prefix}h{i}", f"{self.prefix}p{i}"
            run(["ip", "link", "add", host, "type", "veth", "peer", "name", peer])
            self.created_links.append(host)
            run(["ip", "link", "set", peer, "netns", ns])
            run(["ip", "link", "set", host, "master", self.bridge])
            run(["ip", "link", "set", host, "up"])
            run(["ip", "-n", ns, "link", "set", "lo", "up"])
            run(["ip", "-n", ns, "link", "set", peer, "name", "eth0"])
            run(["ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0"])
            run(["ip", "-n", ns, "link", "set", "eth0", "up"])
        # prove it: the harness reaches a socket inside the first namespace
        import proxy  # noqa: local import, avoids a cycle at module load
        s = proxy.socket_in_netns(self.ns(1))
        try:
            s.bind((self.ips[1], 0))
            s.listen(1)
            c = socket.create_connection(s.getsockname(), timeout=5)
            c.close()
        finally:
            s.close()

    def ports(self, i):
        return {"dns": 1053, "api": 50051, "peer": 50052, "http": 9153, "proxy": 50062}

    def ns(self, i):
        return f"{self.prefix}n{i}"

    def exec_prefix(self, i):
        return ["nsenter", f"--net=/run/netns/{self.ns(i)}", "--"]

    def _nft(self, i, script):
        run(["nsenter", f"--net=/run/netns/{self.ns(i)}", "--", "nft", "-f", "-"], input=script)

    # --- faults -------------------------------------------------------------

    def drop(self, src, dst):
        """Packets from node src to node dst are dropped (one way)."""
        self._nft(src, f"add rule inet {TABLE} output ip daddr {self.ips[dst]} drop\n")
        self._nft(dst, f"add rule inet {TABLE} input ip saddr {self.ips[src]} drop\n")

    def partition(self, groups):
        """Nodes in different groups cannot talk; each list in groups is one side."""
        side = {i: k for k, g in enumerate(groups) for i in g}
        for a in side:
            for b in side:
                if side[a] != side[b]:
                    self.drop(a, b)

    def loss(self, percent, nodes=None):
        """Drop percent% of the packets each node receives from the other nodes."""
        nodes = list(self.ips) if nodes is None else nodes
        for i in nodes:
            others = ", ".join(ip for j, ip in self.ips.items() if j != i)
            self._nft(i, f"add rule inet {TABLE} input ip saddr {{ {others} }} numgen random mod 100 < {int(percent)} drop\n")

    def heal(self):
        if not self.can_partition:
            return
        for i in self.ips:
            self._nft(i, f"flush chain inet {TABLE} input\nflush chain inet {TABLE} output\n")

    def rules(self):
        out = {}
        for i in self.ips:
            p = run(["nsenter", f"--net=/run/netns/{self.ns(i)}", "--", "nft", "list", "table", "inet", TABLE], check=False)
            out[i] = p.stdout
        return out

    def cleanup(self):
        for ns in reversed(self.created_ns):
            run(["ip", "netns", "del", ns], check=False)
        for link in reversed(self.created_links):
            run(["ip", "link", "del", link], check=False)
        self.created_ns, self.created_links = [], []


def make_net(n, log, want_netns=True, allow_install=True):
    """The best network this machine allows, with a clear message for what it cannot do."""
    if want_netns:
        why = None
        if os.geteuid() != 0:
            why = "not root"
        elif not shutil.which("ip") or not shutil.which("nsenter"):
            why = "`ip` or `nsenter` missing"
        if why is None:
            nft = shutil.which("nft") is not None
            if not nft and allow_install and shutil.which("apt-get"):
                log("nft not found: installing nftables with apt-get (use --no-install to skip)")
                env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
                for cmd in (["apt-get", "install", "-y", "-qq", "nftables"],
                            ["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "nftables"]):
                    try:
                        p = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
                    except subprocess.TimeoutExpired:
                        break
                    if cmd[1] == "install" and p.returncode == 0:
                        break
                nft = shutil.which("nft") is not None
            if not nft:
                log("SKIP partitions and packet loss: no `nft` (nftables) on this machine")
            try:
                return NetnsNet(n, log, nft)
            except Exception as e:
                why = f"setting up namespaces failed: {e}"
        log(f"SKIP network namespaces ({why}): nodes run on loopback, partition and loss nemeses are skipped")
    else:
        log("network namespaces off (--no-netns): nodes run on loopback, partition and loss nemeses are skipped")
    return LoopbackNet(n, log)
