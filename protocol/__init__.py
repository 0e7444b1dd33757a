"""The MQTT contract shared by the agent and the hub: topics, messages, signing, rating,
credit rules."""
