app_name = "email_account_app"
app_title = "Email Account App"
app_publisher = "email_account_app developers"
app_description = "Email accounts that sync mail both ways"
app_email = "developers@email-account-app.invalid"
app_license = "mit"

export_python_type_annotations = True
