# For tooling that predates pyproject.toml; the metadata lives there.
from setuptools import find_packages, setup

setup(
	name="email_account_app",
	packages=find_packages(include=["email_account_app", "email_account_app.*"]),
	include_package_data=True,
	zip_safe=False,
)
