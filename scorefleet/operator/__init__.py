"""scorefleet.operator"""
