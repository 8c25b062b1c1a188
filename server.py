def create_app(test_config=None):
    raise NotImplementedError
