"""Every test can use the whole-app driver's fixtures (``tests/driver``)."""

pytest_plugins = ("tests.driver.fixtures",)
