# Seed 004 (A2A over Pilot), the three-agent orchestrator.
#
# ADDED (marked below, before the seed's block): `import requests` and a
# definition of send_a2a_task(url, text), which the seed calls but never
# defines. It sends the seed's own tasks/send request (as in its requests
# script) and returns the report's text.
#
# The block after the marker is the seed's, verbatim; the only difference
# from the seed's text is the indentation, which its plain text lost and
# Python needs.
#
# It expects a gateway that maps the three agents to 10.4.0.1-3 (port 80):
#   sudo pilotctl gateway start --ports 80 data-analyst code-reviewer report-writer
# test/seeds/seed004-a2a.test.ts runs it, with python3 and python3-requests.

# ---- added: not in the seed ----
import requests


def send_a2a_task(url, text):
    payload = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tasks/send",
        "params": {"message": {"role": "user", "parts": [{"type": "text", "text": text}]}},
    }
    result = requests.post(f"{url}/a2a", json=payload).json()
    return result["result"]["artifacts"][0]["parts"][0]["text"]


# ---- the seed, verbatim ----
agents = {
    "data-analyst": "http://10.4.0.1",
    "code-reviewer": "http://10.4.0.2",
    "report-writer": "http://10.4.0.3",
}

# Discover all agents
for name, url in agents.items():
    card = requests.get(f"{url}/.well-known/agent.json").json()
    print(f"{name}: {[s['name'] for s in card['capabilities']['skills']]}")

# Send tasks to each based on their capabilities
analysis = send_a2a_task(agents["data-analyst"], "Analyze Q1 sales data")
review = send_a2a_task(agents["code-reviewer"], "Review the analysis code")
report = send_a2a_task(agents["report-writer"],
                       f"Write a report based on: {analysis}")
