"""Test doubles that speak real protocols (HTTPS), for tests that must not touch the network."""
