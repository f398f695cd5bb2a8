"""scorefleet.api"""
