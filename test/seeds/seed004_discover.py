# Seed 004 (A2A over Pilot), discovery by tag: `pilotctl --json peers --search
# TAG`, then `pilotctl --json gateway map HOSTNAME` for each peer, then each
# agent's card. The tutorial's script, verbatim. Nothing added. The only
# difference from the seed's text is the indentation, which the seed's plain
# text lost and Python needs.
#
# It expects `pilotctl` on PATH, a running daemon (PILOT_HOME) and a running
# gateway. polo_score is each node's reputation (0-100) as the registry computes
# it from task receipts; seed004-a2a.test.ts hands it a few first.
# test/seeds/seed004-a2a.test.ts runs it, with python3 and python3-requests.
import subprocess, json, requests

def pilotctl(*args):
    result = subprocess.run(
        ["pilotctl", "--json"] + list(args),
        capture_output=True, text=True
    )
    return json.loads(result.stdout).get("data", {})

def discover_a2a_agents(tag: str) -> list:
    """Discover A2A-capable agents by tag and fetch their Agent Cards."""
    # Step 1: Find agents with the tag
    peers = pilotctl("peers", "--search", tag)

    # Step 2: Map each through the gateway
    agents = []
    for peer in peers.get("peers", []):
        hostname = peer.get("hostname", str(peer["node_id"]))

        # Map to gateway (assumes gateway is running)
        mapping = pilotctl("gateway", "map", hostname)
        local_ip = mapping.get("local_ip")

        if local_ip:
            # Step 3: Fetch the A2A Agent Card
            try:
                card_url = f"http://{local_ip}/.well-known/agent.json"
                card = requests.get(card_url, timeout=5).json()
                agents.append({
                    "hostname": hostname,
                    "local_ip": local_ip,
                    "card": card,
                    "polo_score": peer.get("polo_score", 0)
                })
            except Exception:
                pass # Agent may not serve A2A

    return agents

# Discover all A2A agents tagged "nlp"
nlp_agents = discover_a2a_agents("nlp")
for agent in nlp_agents:
    print(f"{agent['hostname']} (polo: {agent['polo_score']:.1f})")
    for skill in agent["card"]["capabilities"]["skills"]:
        print(f" - {skill['name']}: {skill['description']}")
