import factory
from allauth.account.models import EmailAddress
from django.contrib.auth.models import Group

from dealers.models import Membership, Organisation, Region, StaffRole, Territory, User

PASSWORD = "correct-horse-battery-staple"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        skip_postgeneration_save = True

    email = factory.Sequence(lambda n: f"person{n}@example.com")
    first_name = factory.Faker("first_name")
    last_name = factory.Faker("last_name")
    password = factory.django.Password(PASSWORD)

    @factory.post_generation
    def verified_email(obj, create, extracted, **kwargs):
        if create:
            EmailAddress.objects.create(user=obj, email=obj.email, verified=True, primary=True)


class StaffFactory(UserFactory):
    is_staff = True

    @factory.post_generation
    def roles(obj, create, extracted, **kwargs):
        if create and extracted:
            obj.groups.add(*Group.objects.filter(name__in=extracted))


def partner_manager(**kwargs) -> User:
    return StaffFactory(roles=[StaffRole.PARTNER_MANAGER], **kwargs)


def regional_director(**kwargs) -> User:
    return StaffFactory(roles=[StaffRole.REGIONAL_DIRECTOR], **kwargs)


def channel_admin(**kwargs) -> User:
    return StaffFactory(roles=[StaffRole.CHANNEL_ADMIN], **kwargs)


def direct_sales(**kwargs) -> User:
    return StaffFactory(roles=[StaffRole.DIRECT_SALES], **kwargs)


class RegionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Region

    name = factory.Sequence(lambda n: f"Region {n}")
    code = factory.Sequence(lambda n: f"r{n}")


class OrganisationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Organisation

    name = factory.Sequence(lambda n: f"Dealer {n} B.V.")
    kind = Organisation.Kind.RESELLER
    status = Organisation.Status.ACTIVE
    region = factory.SubFactory(RegionFactory)
    city = "Utrecht"
    country = "NL"


class TerritoryFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Territory

    organisation = factory.SubFactory(OrganisationFactory)
    country = "NL"


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    user = factory.SubFactory(UserFactory)
    organisation = factory.SubFactory(OrganisationFactory)
    role = Membership.Role.DEALER_USER


def dealer_admin(organisation=None, **kwargs) -> User:
    extra = {"organisation": organisation} if organisation else {}
    return MembershipFactory(role=Membership.Role.DEALER_ADMIN, **extra, **kwargs).user


def dealer_user(organisation=None, **kwargs) -> User:
    extra = {"organisation": organisation} if organisation else {}
    return MembershipFactory(role=Membership.Role.DEALER_USER, **extra, **kwargs).user
