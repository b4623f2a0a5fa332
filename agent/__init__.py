"""puewatch.agent"""
