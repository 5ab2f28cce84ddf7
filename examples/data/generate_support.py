"""Write examples/data/support.jsonl and the examples/data/bad/ sets. Deterministic: run it again, same bytes.

support.jsonl is a customer-support set for the fictional company "Nimbus Cloud Storage":
each intent has ONE short canonical answer holding facts a base model cannot know
(plan names, prices, limits, hours) and eighteen differently worded questions, so a
validation split holds new wordings of questions whose answers were learned.

Each file in bad/ is support.jsonl with one kind of problem added; bad/expected.json
names the check each one must trip and the lines it concerns.

    python examples/data/generate_support.py
"""

from __future__ import annotations

import json
import random
from pathlib import Path

HERE = Path(__file__).resolve().parent
SEED = 7

INTENTS: dict[str, tuple[str, str, list[str]]] = {
    "plans_overview": ("billing", "Drift is free with 5 GB, Cumulus is $6 a month for 200 GB and Stratus is $15 a month for 2 TB.", [
        "What plans do you offer?",
        "Which subscription tiers are available?",
        "Can you list your pricing options?",
        "How much does Nimbus cost?",
        "What are the different storage packages and their prices?",
        "I'm comparing providers, what tiers do you sell?",
        "Give me an overview of your plans.",
        "Is there a paid version and what does it include?",
        "Which options exist besides the free account?",
        "How many plans does Nimbus have?",
        "Tell me about pricing.",
        "What do the subscriptions cost per month?",
        "What does each tier cost?",
        "Break down your price list for me.",
        "Drift, Cumulus, Stratus: what's the difference?",
        "How much does the Stratus plan cost?",
        "My team needs lots of room, which packages could we buy and at what price?",
        "Before I sign up I'd like to see all the offers side by side.",
    ]),
    "free_plan": ("billing", "The free Drift plan includes 5 GB of storage and never expires.", [
        "Is there a free tier?",
        "How much space do I get without paying?",
        "Does the free account run out after a trial period?",
        "What's included in Drift?",
        "Can I use Nimbus at no cost?",
        "How big is the complimentary storage?",
        "Will my free account be closed after some months?",
        "What does a non-paying user receive?",
        "Do you have a no-charge option forever?",
        "How many gigabytes come with the basic account?",
        "Is Drift really free or just a trial?",
        "What's the storage limit on the zero-dollar plan?",
        "What do I get if I never pay anything?",
        "Is the entry-level account gratis permanently?",
        "Does Drift start charging after the first month?",
        "How much room does the unpaid account have?",
        "I only need a little space for a few documents, can I stay on the basic plan forever?",
        "My friend says the free version is just a 30-day demo, is that right?",
    ]),
    "upgrade_plan": ("billing", "Open Settings > Plan, pick Cumulus or Stratus and confirm; the upgrade takes effect immediately.", [
        "How do I upgrade my account?",
        "I want more storage, how can I move to a bigger plan?",
        "Where can I switch to Stratus?",
        "What are the steps to go from Drift to Cumulus?",
        "Can I buy a larger subscription from the app?",
        "How long does it take for an upgrade to apply?",
        "Where is the option to change to a paid tier?",
        "I'd like to get 2 TB, what should I do?",
        "How can I raise my storage quota?",
        "Upgrading: where do I click?",
        "Is it possible to move up a plan mid-month?",
        "How to get more space on my account?",
        "How do I move from the free plan to a paid one?",
        "Which menu lets me pick a higher tier?",
        "Does a plan change to a bigger tier start right away or next month?",
        "Where do I go to buy more capacity?",
        "I'm on Cumulus and my videos need far more room, how do I go up to Stratus?",
        "My 5 GB are no longer enough, how do I get a larger package?",
    ]),
    "cancel_subscription": ("billing", "Go to Settings > Plan > Cancel plan; your files stay available until the end of the billing period.", [
        "How do I cancel my subscription?",
        "I want to stop paying for Nimbus.",
        "Where can I end my Cumulus plan?",
        "What happens to my files if I unsubscribe?",
        "How to terminate the paid plan?",
        "Can I stop auto-renewal of my membership?",
        "I no longer need Stratus, how do I quit it?",
        "Is there a button to cancel billing?",
        "Will I lose access right away when I cancel?",
        "Steps for ending a monthly subscription?",
        "How do I downgrade back to nothing paid?",
        "Cancel my plan please, how?",
        "How do I stop my subscription from renewing?",
        "Where can I opt out of the monthly charge?",
        "Do I keep my files until the billing period ends if I quit paying?",
        "Please tell me how to end my Nimbus membership.",
        "Money is tight this month, how do I stop the Cumulus charges?",
        "I'm switching to another provider, where do I terminate my plan?",
    ]),
    "refund_policy": ("billing", "We refund any annual plan in full within 30 days of purchase; monthly plans are not refunded.", [
        "Can I get my money back?",
        "What is your refund policy?",
        "I paid for a year by mistake, is a refund possible?",
        "Do you reimburse monthly payments?",
        "How many days do I have to ask for a refund?",
        "Are yearly subscriptions refundable?",
        "I'm unhappy with the service, will you return my payment?",
        "Is there a money-back guarantee?",
        "Could I be reimbursed after two weeks?",
        "Which purchases qualify for reimbursement?",
        "Refunds: how do they work?",
        "If I cancel the annual plan early, do I get anything back?",
        "Can I get a refund on a monthly payment?",
        "Within how many days can an annual purchase be returned?",
        "Do you give money back if I change my mind?",
        "What's the deadline for a reimbursement?",
        "I bought Stratus for twelve months last week and don't need it, can I have the money returned?",
        "My card was charged for this month's plan, can you pay it back?",
    ]),
    "payment_methods": ("billing", "We accept Visa, Mastercard, American Express and PayPal; invoices are available for Stratus.", [
        "Which payment methods do you accept?",
        "Can I pay with PayPal?",
        "Do you take Amex?",
        "What cards can I use for billing?",
        "Is paying by invoice possible?",
        "How can I pay for my subscription?",
        "Are credit cards the only option?",
        "Do you support Mastercard?",
        "Which ways of paying are supported?",
        "Can my company be invoiced instead of using a card?",
        "What forms of payment work with Nimbus?",
        "Is Visa accepted?",
        "Can I pay with my debit card?",
        "Which credit card brands work?",
        "Is PayPal an option for the monthly fee?",
        "Can our accounting department get a bill instead of a card charge?",
        "I don't own a credit card, how else can I pay?",
        "My company needs a formal invoice for the Stratus purchase, is that supported?",
    ]),
    "support_hours": ("support", "Live chat support is open Monday to Friday, 7:00 to 19:00 CET; email support answers within 24 hours.", [
        "When is customer support available?",
        "What are your opening hours?",
        "Can I reach an agent on weekends?",
        "How fast does email support reply?",
        "At what time does live chat close?",
        "Is your help desk open on Saturday?",
        "When can I talk to a human?",
        "What times is the chat staffed?",
        "How long until support answers my message?",
        "Are you available around the clock?",
        "What days can I contact the support team?",
        "Which hours can I get live help?",
        "Is live chat open on Sunday?",
        "What time does your chat open in the morning?",
        "How quickly will I hear back if I write to you?",
        "Does anyone answer the chat late in the evening?",
        "I work until six, will anyone still be there on the chat afterwards?",
        "I sent you a message this morning, when should I expect a response?",
    ]),
    "max_file_size": ("files", "A single upload can be up to 50 GB on Stratus, 10 GB on Cumulus and 2 GB on Drift.", [
        "What is the largest file I can upload?",
        "Is there a file size limit?",
        "Can I upload a 20 GB video?",
        "How big can one file be on the free plan?",
        "What's the maximum upload size?",
        "My large archive fails to upload, is there a cap?",
        "Do you restrict the size of individual files?",
        "How large a file does Stratus allow?",
        "What size limit applies to Cumulus uploads?",
        "Why can't I upload my huge backup file?",
        "Is there a maximum per single file?",
        "Can I store very large files like disk images?",
        "What's the upload cap per file on Drift?",
        "Can I put a 60 GB file in my storage?",
        "How big may a single video be on Cumulus?",
        "What's the biggest single upload you accept?",
        "My 4K film is 30 GB, will it go through on my plan?",
        "The upload of my virtual machine image keeps getting rejected, is it too big?",
    ]),
    "reset_password": ("account", "Click 'Forgot password' on the sign-in page; the reset link we email you is valid for 30 minutes.", [
        "I forgot my password.",
        "How do I reset my password?",
        "I can't sign in because I lost my password.",
        "How long is the password reset link valid?",
        "Where do I recover access to my account?",
        "My reset email link expired, what now?",
        "How can I choose a new password if I don't remember the old one?",
        "Locked out of my account, help?",
        "What's the procedure for a password reset?",
        "I need to recover my login credentials.",
        "The sign-in page says wrong password, how do I fix it?",
        "Is there a forgotten password option?",
        "I can't remember my password, what do I do?",
        "How long does the password email stay active?",
        "Where is the 'Forgot password' button?",
        "Can I get a new password sent to me?",
        "I've tried every password I use and none work, how do I get back in?",
        "The link to set a new password says it's no longer valid, why?",
    ]),
    "enable_2fa": ("security", "Turn on two-factor sign-in under Settings > Security > Two-step login and scan the QR code with an authenticator app.", [
        "How do I enable two-factor authentication?",
        "Do you support 2FA?",
        "Can I protect my account with an authenticator app?",
        "Where is the two-step verification setting?",
        "How do I add a second login factor?",
        "I want extra security when signing in.",
        "Is multi-factor authentication available?",
        "How to set up Google Authenticator with Nimbus?",
        "Where can I switch on two-step login?",
        "Can I require a code in addition to my password?",
        "How do I make my account more secure?",
        "Setting up MFA, where do I start?",
        "How do I turn on a one-time code for sign-in?",
        "Can I use an authenticator like Authy?",
        "Where do I scan the QR code for two-step login?",
        "How can I stop others from logging in with just my password?",
        "Someone guessed my password on another site, how do I lock down my Nimbus login?",
        "My employer requires a second factor on all accounts, does Nimbus have that?",
    ]),
    "desktop_app": ("apps", "The Nimbus desktop app, code-named Skylark, runs on Windows 10+, macOS 12+ and Ubuntu 22.04+.", [
        "Is there a desktop client?",
        "Does Nimbus work on Linux?",
        "Which operating systems does the computer app support?",
        "Can I install Nimbus on my Mac?",
        "What is Skylark?",
        "Do you have a Windows program?",
        "What are the system requirements for the desktop application?",
        "Will the PC app run on Windows 8?",
        "Is Ubuntu supported?",
        "Which macOS version do I need?",
        "Can I sync folders from my laptop?",
        "What's the name of your desktop software?",
        "Do you have software for my computer?",
        "Which Windows versions does the desktop app need?",
        "Is there a native app for macOS?",
        "Does Skylark support Windows 7?",
        "I just bought a new MacBook, can I sync my files with a program on it?",
        "My office PCs run Linux Mint, is there something I can install?",
    ]),
    "mobile_app": ("apps", "The Nimbus mobile app is called Nimbus Go and is available for iOS 16+ and Android 10+.", [
        "Do you have a phone app?",
        "Is there an Android version?",
        "Can I use Nimbus on my iPhone?",
        "What is the mobile application called?",
        "Which iOS version does the app need?",
        "Where can I get the app for my smartphone?",
        "Does Nimbus Go run on older Android devices?",
        "Is there an app for tablets?",
        "What mobile platforms are supported?",
        "Can I access my files from my cell?",
        "Which app should I download on my phone?",
        "Minimum Android version for the app?",
        "Is there an iOS app?",
        "What's the name of the Nimbus app for phones?",
        "Does the mobile app work on Android 9?",
        "Where do I find Nimbus in the app store?",
        "I'd like to reach my documents from my Samsung while commuting, what do I install?",
        "My iPhone is on iOS 15, can I still use your app?",
    ]),
    "share_link": ("sharing", "Right-click a file, choose Share > Create link; links expire after 14 days unless you change it.", [
        "How do I share a file?",
        "Can I send someone a link to a document?",
        "How long do shared links work?",
        "What's the way to give a colleague access to a folder?",
        "Do sharing links expire?",
        "How can I let a friend download my photos?",
        "Where is the share option?",
        "How to create a public link?",
        "My link stopped working after two weeks, why?",
        "Can people without an account open my shared files?",
        "Generating a download link, how?",
        "Is there a way to distribute files to clients?",
        "How do I create a link to a file?",
        "How long is a shared link valid?",
        "Where do I find 'Create link'?",
        "Can a person without a Nimbus account open something I send?",
        "I want to hand my wedding photos to the guests, how?",
        "My client says the link I sent last month is dead, what happened?",
    ]),
    "recycle_bin": ("files", "Deleted files stay in the Recycle Bin for 30 days on Drift and 180 days on paid plans.", [
        "I deleted a file by accident, can I get it back?",
        "How long are deleted files kept?",
        "Where do removed items go?",
        "Can I restore something I erased last week?",
        "Is there a trash folder?",
        "How do I recover deleted documents?",
        "When is the recycle bin emptied?",
        "I removed a folder months ago, is it still recoverable?",
        "Does the free plan keep deleted files?",
        "How many days until trashed files are gone for good?",
        "Undo a deletion, possible?",
        "Where can I find files I threw away?",
        "Where does a file go when I delete it?",
        "How long do deleted files stay on the free plan?",
        "Is there a bin where deleted things wait?",
        "How many days are deleted items kept on paid plans?",
        "My son wiped a folder of homework on Monday, can we still rescue it?",
        "I emptied a whole folder by mistake, is it gone forever?",
    ]),
    "version_history": ("files", "Nimbus keeps previous versions of each file for 90 days on Cumulus and 365 days on Stratus.", [
        "Can I restore an older version of a file?",
        "Do you keep file history?",
        "I overwrote my spreadsheet, can I go back?",
        "How far back does versioning go?",
        "Is there revision history on Stratus?",
        "How do I see earlier edits of a document?",
        "Are past versions saved automatically?",
        "How long are old copies of a file retained?",
        "Can I roll back a file to yesterday's state?",
        "Does Cumulus include versioning?",
        "What happens to previous revisions when I save?",
        "Recover the prior version of a presentation?",
        "Can I get back yesterday's version of my document?",
        "How long does Stratus keep file versions?",
        "Is version history part of Cumulus?",
        "Does Nimbus save old revisions of my files?",
        "I saved over my thesis with the wrong text, can I bring the earlier one back?",
        "A colleague changed our budget sheet last month, can I see what it looked like before?",
    ]),
    "encryption": ("security", "All files are encrypted with AES-256 at rest and TLS 1.3 in transit; Stratus adds zero-knowledge Vault folders.", [
        "Is my data encrypted?",
        "How secure are my files?",
        "Which encryption do you use?",
        "Are uploads protected during transfer?",
        "Can Nimbus employees read my documents?",
        "Do you offer end-to-end encryption?",
        "What is a Vault folder?",
        "How do you keep stored files safe?",
        "Is zero-knowledge storage available?",
        "What cipher protects data on your servers?",
        "Is the connection to Nimbus secure?",
        "How is privacy of my content ensured?",
        "Are my files protected by encryption?",
        "What encryption standard do you use for stored files?",
        "Is there client-side encryption?",
        "Do you use AES-256?",
        "I keep medical records in Nimbus, could a hacker read them if they broke in?",
        "Could someone on the same café Wi-Fi intercept my uploads?",
    ]),
    "data_location": ("security", "Your data is stored in our Frankfurt and Dublin data centers; Stratus customers can choose Montreal instead.", [
        "Where are my files stored?",
        "In which country are your servers?",
        "Is my data kept in the EU?",
        "Can I choose the region of my storage?",
        "Where are your data centers located?",
        "Do you store anything in the US?",
        "Can my company keep data in Canada?",
        "Which locations host customer data?",
        "Where physically do my uploads end up?",
        "Is data residency configurable?",
        "Are the servers in Germany?",
        "What region is my account in?",
        "Which country hosts my files?",
        "Are my files kept in Europe?",
        "Do you have servers in Frankfurt?",
        "Can I pick where my files are stored?",
        "Our law firm must keep client files inside the European Union, do you comply?",
        "We're a Canadian company and want our documents to stay in Canada, possible?",
    ]),
    "storage_full": ("files", "When storage is full, uploads pause but existing files stay safe; free space or upgrade to resume syncing.", [
        "What happens when I run out of space?",
        "My storage is full, will I lose files?",
        "Why did syncing stop?",
        "I hit my quota, what now?",
        "Uploads are paused, what does that mean?",
        "Will Nimbus delete anything if I exceed my limit?",
        "How do I resume syncing after reaching the cap?",
        "My account says 100% used, is that a problem?",
        "Can I keep uploading over my limit?",
        "Are my files safe when the quota is exceeded?",
        "New photos are not uploading anymore, why?",
        "Out of storage, how to fix?",
        "What happens to my files if my storage is full?",
        "My storage is full, how do I fix it?",
        "Will my files be deleted if I go over my storage?",
        "Why are uploads paused on my account?",
        "The app shows a red bar and my new documents don't appear online, what's going on?",
        "I've used every gigabyte I have, are my existing files at risk?",
    ]),
    "family_sharing": ("billing", "The Stratus plan can be shared with up to 5 family members, each with their own private space.", [
        "Can I share my plan with my family?",
        "Is there a family subscription?",
        "How many people can use one Stratus account?",
        "Can my kids get their own space under my plan?",
        "Do you offer household sharing?",
        "Can I add my partner to my subscription?",
        "Will relatives see my files if we share a plan?",
        "How many members can join a shared plan?",
        "Is family sharing possible on Cumulus?",
        "Can we split one subscription between several users?",
        "Adding family members, how many are allowed?",
        "Is there a group plan for a household?",
        "Can my family use my Stratus plan?",
        "How many relatives can I add to one plan?",
        "Do family members get separate storage?",
        "Is there a plan for me and my spouse?",
        "My wife and three children all want space, can we do it on one bill?",
        "Can my parents join my subscription without seeing my documents?",
    ]),
    "student_discount": ("billing", "Students get 40% off Cumulus with the code NIMBUS-EDU and a valid university email.", [
        "Do you have a student discount?",
        "Is there an education price?",
        "I'm at university, can I pay less?",
        "What is the discount code for students?",
        "How much do students save?",
        "Are there academic offers?",
        "Can I get Cumulus cheaper as a student?",
        "Do pupils get a reduced price?",
        "What do I need to prove I'm a student?",
        "Is there a promo for college users?",
        "Student pricing?",
        "How do I claim the education discount?",
        "Is there a discount for students?",
        "What is the student code for Cumulus?",
        "Do I need a university email for the discount?",
        "How big is the student discount?",
        "I'm enrolled in a master's programme, is there a cheaper price for me?",
        "My school gave me an .edu address, does that get me a deal?",
    ]),
    "offline_access": ("apps", "Mark a folder 'Available offline' in Nimbus Go or Skylark to open its files without internet.", [
        "Can I access my files offline?",
        "How do I use documents without an internet connection?",
        "I'm going on a flight, can I take my files along?",
        "Does the app work without Wi-Fi?",
        "How do I keep a folder on my device?",
        "Is offline mode available?",
        "Can I open files when I have no signal?",
        "How do I download a folder for travelling?",
        "What does 'Available offline' do?",
        "Working without connectivity, possible?",
        "Can Skylark keep local copies?",
        "How to view files while disconnected?",
        "Can I open my files without internet?",
        "How do I make a folder available offline?",
        "Does Skylark work offline?",
        "Will my files open without a connection?",
        "I'm going camping where there's no coverage, how do I bring my maps along?",
        "The train has no Wi-Fi, can I still read my reports on the way?",
    ]),
    "sync_conflicts": ("files", "When two devices edit the same file, Nimbus keeps both and renames one 'conflict copy'.", [
        "What happens if two people edit the same file?",
        "Why do I see a file called conflict copy?",
        "I edited a document on two computers, which version wins?",
        "How are sync conflicts handled?",
        "Will simultaneous changes overwrite each other?",
        "My laptop and desktop changed one file, what now?",
        "Does Nimbus merge conflicting edits?",
        "Where did this duplicate with 'conflict' in the name come from?",
        "Can I lose work when two devices sync at once?",
        "How are clashing versions resolved?",
        "Two users saved the same spreadsheet, what happens?",
        "What is a conflict copy?",
        "What happens when two devices change the same file?",
        "Which version wins if two people edit at once?",
        "Does Nimbus keep both versions in a sync conflict?",
        "What does a conflict copy mean?",
        "My colleague and I both updated the agenda at the same moment, whose changes were kept?",
        "I worked on a report on the plane and at home, now there are two files, why?",
    ]),
    "account_deletion": ("account", "Request deletion under Settings > Account > Delete account; everything is erased permanently after 7 days.", [
        "How do I delete my account?",
        "I want to close my Nimbus account for good.",
        "Can you remove all my data?",
        "How long until my account is permanently erased?",
        "Where do I request account deletion?",
        "Can I undo deleting my account?",
        "How do I leave Nimbus and wipe everything?",
        "Is my data destroyed when I close the account?",
        "Steps to remove my profile entirely?",
        "I'd like to exercise my right to be forgotten.",
        "Permanently close account, how?",
        "What happens after I ask for my account to be removed?",
        "How do I delete my Nimbus account?",
        "Where is the option to delete my account?",
        "How long until my deleted account is gone?",
        "Can I cancel a deletion request?",
        "I'm done with cloud storage, how do I make sure nothing of mine stays on your servers?",
        "Under privacy law I want all my personal information erased, how?",
    ]),
    "api_access": ("developers", "The Nimbus developer API is available on Stratus with a limit of 1,000 requests per minute.", [
        "Do you have an API?",
        "Can I access my files programmatically?",
        "What is the rate limit of the developer API?",
        "Which plan includes API access?",
        "Can I build an integration with Nimbus?",
        "How many API calls can I make per minute?",
        "Is there a REST interface for developers?",
        "Can scripts upload files automatically?",
        "Is the API available on Cumulus?",
        "Do you offer an SDK or web API?",
        "What are the API quotas?",
        "Can I automate backups through an API?",
        "Is there a developer API?",
        "Which plan do I need for the API?",
        "How many requests per minute does the API allow?",
        "Can I use the API on the free plan?",
        "I want my app to save files to Nimbus on its own, is there a way to connect it?",
        "Our backup software needs to push data every night, can it talk to Nimbus directly?",
    ]),
    "bandwidth_limit": ("sharing", "There is no bandwidth cap on paid plans; Drift share links allow 10 GB of downloads per day.", [
        "Is there a bandwidth limit?",
        "How much can people download from my shared links?",
        "Do you throttle transfers?",
        "Is there a daily download cap on the free plan?",
        "My shared link stopped working after many downloads, why?",
        "Is traffic unlimited on Stratus?",
        "How much data can be transferred per day?",
        "Are downloads metered?",
        "Do paid plans have transfer restrictions?",
        "What is the download allowance for free users?",
        "Can my clients download large amounts from my links?",
        "Data transfer quota?",
        "Is there a download limit on shared links?",
        "How much can be downloaded per day on Drift?",
        "Do paid plans have a bandwidth cap?",
        "Is download traffic unlimited on Cumulus?",
        "Hundreds of customers download my price list from one link, is there a ceiling?",
        "My free link worked in the morning but not in the evening after lots of downloads, why?",
    ]),
    "change_email": ("account", "Change your sign-in email under Settings > Account > Email; we confirm it by sending a code to the new address.", [
        "How do I change my email address?",
        "I have a new email, how do I update my login?",
        "Can I switch the address I sign in with?",
        "Where do I edit my account email?",
        "How do I verify a new email?",
        "My old mailbox is gone, how do I update it?",
        "Can I use a different email for my account?",
        "Updating my contact address, where?",
        "How do I replace the email on my profile?",
        "Is it possible to move my account to another email?",
        "Where is the setting for my login email?",
        "Changing my username email, how?",
        "How do I update the email on my account?",
        "Can I change the email I log in with?",
        "How do I confirm my new email address?",
        "Do you send a code when I change my email?",
        "I left my job and lost my work mailbox, how do I move my login to my personal address?",
        "I got married and have a new address, how do I put it on my account?",
    ]),
    "photo_backup": ("apps", "Nimbus Go backs up photos automatically when Camera Upload is on, over Wi-Fi only by default.", [
        "Can Nimbus back up my photos automatically?",
        "How do I save my camera roll to the cloud?",
        "Does the app upload pictures by itself?",
        "Will photo backup use my mobile data?",
        "What is Camera Upload?",
        "How do I turn on automatic picture backup?",
        "Can my videos sync from my phone?",
        "Why are my photos only uploading on Wi-Fi?",
        "Is there auto backup for images?",
        "How do I protect my phone pictures?",
        "Backing up the gallery, how?",
        "Does Nimbus Go save new photos without me doing anything?",
        "How do I back up my photos automatically?",
        "How do I turn on Camera Upload?",
        "Does photo backup work over mobile data?",
        "Does Nimbus Go back up my pictures?",
        "I'm afraid of losing my holiday snaps if my phone breaks, what should I switch on?",
        "Every time I take a picture I want it safe in the cloud, is that possible?",
    ]),
    "service_status": ("support", "Check status.nimbus.example for live service status; we report incidents there within 10 minutes.", [
        "Is Nimbus down right now?",
        "Where can I check for outages?",
        "The service seems slow, is there an incident?",
        "Do you have a status page?",
        "How do I know if there's a problem on your side?",
        "Is there maintenance going on?",
        "I can't connect, is it just me?",
        "Where are outages announced?",
        "How quickly do you post about incidents?",
        "Are your servers having issues?",
        "Service disruption info?",
        "Where do I see the current system health?",
        "Is there a status page for Nimbus?",
        "How do I check whether Nimbus is down?",
        "Where do you post incidents?",
        "How fast do you report incidents?",
        "Uploads have been failing for an hour, is something broken on your end?",
        "My whole office can't reach Nimbus, where can we see what's happening?",
    ]),
    "file_types": ("files", "Nimbus stores any file type; previews work for over 180 formats, including PDF, Office documents and RAW photos.", [
        "Which file types can I upload?",
        "Can I store RAW photos?",
        "Do you support every format?",
        "Can I preview PDFs in the browser?",
        "Are Office documents viewable online?",
        "Is there a list of supported formats?",
        "Can I upload executables or zip archives?",
        "Will my CAD drawings be accepted?",
        "How many formats can be previewed?",
        "Are some kinds of files blocked?",
        "Can I view Word files without downloading them?",
        "What formats does the viewer handle?",
        "Can I upload any type of file?",
        "Can I preview RAW photos?",
        "How many file formats can you preview?",
        "Is any file type blocked?",
        "I'm a photographer with NEF and CR2 files, can I keep and view them?",
        "Will you refuse my .exe installers or Photoshop files?",
    ]),
}


def clean_records() -> list[dict]:
    records = [
        {"prompt": prompt, "completion": answer, "intent": intent, "tags": [tag]}
        for intent, (tag, answer, prompts) in INTENTS.items()
        for prompt in prompts
    ]
    random.Random(SEED).shuffle(records)
    return records


def dumps(record: dict) -> str:
    return json.dumps(record, ensure_ascii=False)


def write(path: Path, lines: list[str]) -> None:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def bad_sets(records: list[dict]) -> dict[str, dict]:
    """Each bad set: its lines and the check it must trip (severity, 1-based lines)."""
    rng = random.Random(SEED + 1)
    base = [dumps(r) for r in records]
    out: dict[str, dict] = {}

    # Malformed lines are skipped and reported; everything else is still checked.
    lines = list(base)
    broken = {5: '{"prompt": "How do I share a file?", "completion": "Right-click',
              12: json.dumps({"prompt": "Where are my files stored?"}),
              20: json.dumps({"prompt": "", "completion": "Nimbus has three plans."}),
              33: json.dumps({"prompt": ["What plans do you offer?"], "completion": "Three."})}
    for line, text in broken.items():
        lines.insert(line - 1, text)
    out["malformed.jsonl"] = {"lines": lines, "check": "malformed", "severity": "error", "at": sorted(broken)}

    # Copies (exact, or up to casing, spacing and punctuation) of existing examples: more than 5% of the set.
    # A greeting or a typo would make a prompt variation instead: a paraphrase group, not a duplicate.
    lines, at = list(base), []
    for k, r in enumerate(rng.sample(records, 36)):
        p = r["prompt"]
        copy = [p, p.lower(), f"  {p.replace(' ', '  ')}", p.rstrip("?.!") + "??"][k % 4]
        lines.append(dumps({**r, "prompt": copy}))
        at.append(len(lines))
    out["duplicates.jsonl"] = {"lines": lines, "check": "duplicates", "severity": "error", "at": at}

    # The same question answered with other facts.
    lines, at = list(base), []
    swaps = {"$6": "$8", "30 days": "14 days", "5 GB": "15 GB"}
    for r in records:
        for old, new in swaps.items():
            if old in r["completion"] and len(at) < 3:
                lines.append(dumps({**r, "completion": r["completion"].replace(old, new)}))
                at.append(len(lines))
                break
    out["contradictions.jsonl"] = {"lines": lines, "check": "contradictions", "severity": "error", "at": at}

    def altered(check: str, change, picks: int, severity: str = "warning") -> None:
        lines, at = list(base), []
        for idx in sorted(rng.sample(range(len(records)), picks)):
            lines[idx] = dumps({**records[idx], "completion": change(records[idx]["completion"])})
            at.append(idx + 1)
        out[f"{check}.jsonl"] = {"lines": lines, "check": check, "severity": severity, "at": at}

    altered("prefix", lambda c: "Answer: " + c, 6)
    altered("markdown", lambda c: "**Short answer:** " + c, 5)
    altered("casing", lambda c: c[0].lower() + c[1:], 4)
    altered("whitespace", lambda c: c + "  ", 4)
    altered("language", lambda c: "Bitte öffnen Sie die Einstellungen und wählen Sie den passenden Punkt, "
            "wir helfen Ihnen gerne weiter.", 4)
    altered("length-outliers", lambda c: " ".join([c] * 16), 3)

    # Personal data in prompts (never echoed in full by the report).
    lines, at = list(base), []
    pii = ["My address is jane.doe@example.com, {p}", "Call me on +44 20 7946 0958. {p}",
           "My card 4111 1111 1111 1111 was charged twice. {p}"]
    for k, idx in enumerate(sorted(rng.sample(range(len(records)), 3))):
        lines[idx] = dumps({**records[idx], "prompt": pii[k].format(p=records[idx]["prompt"])})
        at.append(idx + 1)
    out["pii.jsonl"] = {"lines": lines, "check": "pii", "severity": "warning", "at": at}

    # Prompts longer than training.maxTokens (1024 by default).
    lines, at = list(base), []
    for idx in sorted(rng.sample(range(len(records)), 1)):
        log = " ".join(f"[sync] uploaded chunk {n} of backup.tar in 12 ms" for n in range(400))
        lines[idx] = dumps({**records[idx], "prompt": f"{records[idx]['prompt']} Here is my log: {log}"})
        at.append(idx + 1)
    out["max-tokens.jsonl"] = {"lines": lines, "check": "max-tokens", "severity": "warning", "at": at}

    # One intent label on most examples: it dominates every other.
    lines = [dumps({**r, "intent": "general"}) if k % 3 else dumps(r) for k, r in enumerate(records)]
    out["skew.jsonl"] = {"lines": lines, "check": "skew-dominant", "severity": "warning", "at": []}

    # Too few examples to learn from.
    out["too-small.jsonl"] = {"lines": base[:30], "check": "size", "severity": "error", "at": []}

    # Abusive, hateful and obscene text, in prompts and in answers (the report never shows it).
    lines, at = list(base), []
    harmful = [("prompt", "This is fucking useless, you idiots. {p}"),
               ("completion", "Shut up, you stupid bitch. {c}"),
               ("prompt", "{p} Answer me, you worthless piece of shit.")]
    for (side, template), idx in zip(harmful, sorted(rng.sample(range(len(records)), 3)), strict=True):
        r = records[idx]
        changed = template.format(p=r["prompt"], c=r["completion"])
        lines[idx] = dumps({**r, side: changed})
        at.append(idx + 1)
    out["harmful.jsonl"] = {"lines": lines, "check": "harmful", "severity": "warning", "at": at}

    return out


def main() -> None:
    records = clean_records()
    write(HERE / "support.jsonl", [dumps(r) for r in records])
    bad_dir = HERE / "bad"
    bad_dir.mkdir(exist_ok=True)
    expected = {}
    for name, spec in bad_sets(records).items():
        write(bad_dir / name, spec.pop("lines"))
        expected[name] = spec
    (bad_dir / "expected.json").write_text(json.dumps(expected, indent=2) + "\n")
    print(f"wrote {len(records)} examples over {len(INTENTS)} intents and {len(expected)} bad sets")


if __name__ == "__main__":
    main()
