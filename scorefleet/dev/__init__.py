"""scorefleet.dev"""
