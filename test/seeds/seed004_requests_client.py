# Seed 004 (A2A over Pilot), "Python requests" client: the tutorial's script,
# verbatim. Nothing added. The only difference from the seed's text is the
# indentation, which the seed's plain text lost and Python needs; every line
# is otherwise character for character the seed's.
#
# It expects a gateway that maps the data-analyst agent to 10.4.0.1 (port 80):
#   sudo pilotctl gateway start --ports 80 data-analyst
# test/seeds/seed004-a2a.test.ts runs it, with python3 and python3-requests.
import requests
import json

# The gateway-mapped local IP for the remote agent
AGENT_URL = "http://10.4.0.1"

def discover_agent():
    """Fetch the A2A Agent Card."""
    resp = requests.get(f"{AGENT_URL}/.well-known/agent.json")
    return resp.json()

def send_task(message: str):
    """Send an A2A task via JSON-RPC."""
    payload = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tasks/send",
        "params": {
            "message": {
                "role": "user",
                "parts": [{"type": "text", "text": message}]
            }
        }
    }
    resp = requests.post(
        f"{AGENT_URL}/a2a",
        json=payload,
        headers={"Content-Type": "application/json"}
    )
    return resp.json()

# Discover capabilities
card = discover_agent()
print(f"Agent: {card['name']}")
print(f"Skills: {[s['name'] for s in card['capabilities']['skills']]}")

# Send a task
result = send_task("Analyze the sentiment of these customer reviews")
print(f"Status: {result['result']['status']['state']}")
print(f"Output: {result['result']['artifacts'][0]['parts'][0]['text']}")
