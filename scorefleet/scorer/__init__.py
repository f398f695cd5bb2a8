"""scorefleet.scorer"""
